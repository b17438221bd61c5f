//go:build !linux

package qemu

import "os/exec"

// dieWithParent has no portable equivalent of PR_SET_PDEATHSIG.
func dieWithParent(*exec.Cmd) {}
