package qemu

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL qemu when the process that
// started it dies, however it dies: a boot test killed by its timeout, or
// boottime ended by a closed pipe, would otherwise leave a VM running on
// the shared host for as long as nobody notices (one did, for an hour,
// during the measurements of docs/PERFORMANCE.md). The signal follows the
// thread that forked qemu; nothing here locks goroutines to threads.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
