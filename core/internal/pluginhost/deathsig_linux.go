package pluginhost

import (
	"os/exec"
	"syscall"
)

// dieWithHost makes the kernel SIGKILL the plugin process when edged dies,
// however it dies (SIGKILL, OOM kill, a crash): a plugin left behind would
// keep its listeners, its files and its CPU, and a new edged would start a
// second copy beside it.
//
// PR_SET_PDEATHSIG fires when the thread that forked the child exits, not
// only the process. The Go runtime ends a thread only when a goroutine
// locked to it (runtime.LockOSThread) returns without unlocking, which
// nothing in edged does outside tests; the archtest keeps it that way.
// os/exec re-checks the parent after setting the signal, so a host that
// dies between fork and prctl does not leave the child behind either.
func dieWithHost(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
