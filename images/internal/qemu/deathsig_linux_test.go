package qemu

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestDieWithParent(t *testing.T) {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kept
	dieWithParent(cmd)
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL || !cmd.SysProcAttr.Setpgid {
		t.Fatalf("SysProcAttr = %+v, want Pdeathsig SIGKILL and the rest kept", cmd.SysProcAttr)
	}
	bare := exec.Command("true")
	dieWithParent(bare)
	if bare.SysProcAttr == nil || bare.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("SysProcAttr = %+v, want Pdeathsig SIGKILL", bare.SysProcAttr)
	}
}
