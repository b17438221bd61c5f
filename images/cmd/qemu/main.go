// Command qemu boots an appliance image on a workstation under qemu, with
// SIP (UDP and TCP) and the admin port forwarded to 127.0.0.1:
//
//	qemu -arch amd64 -mode uefi -image bin/amd64/umedge.img
//	qemu -arch arm64 -mode kernel -kernel vmlinuz -initramfs bin/arm64/initramfs.cpio.lz4
//
// The serial console is on the terminal; Ctrl-C ends the VM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/umedge/umedge/images/internal/qemu"
)

func main() {
	var c qemu.Config
	var mode string
	flag.StringVar(&c.Arch, "arch", "amd64", "amd64 or arm64")
	flag.StringVar(&mode, "mode", "uefi", "uefi (disk image through firmware and systemd-boot) or kernel (kernel + initramfs)")
	flag.StringVar(&c.Image, "image", "", "disk image (uefi mode); the VM writes to it")
	flag.StringVar(&c.Vars, "vars", "", "UEFI variable store, created if missing (default: image + .vars)")
	flag.StringVar(&c.Kernel, "kernel", "", "kernel (kernel mode)")
	flag.StringVar(&c.Initramfs, "initramfs", "", "initramfs (kernel mode)")
	flag.IntVar(&c.SIPPort, "sip-port", 5060, "host port on 127.0.0.1 forwarded to the guest's SIP 5060, UDP and TCP")
	flag.IntVar(&c.AdminPort, "admin-port", 9060, "host port on 127.0.0.1 forwarded to the guest's admin 9060")
	flag.IntVar(&c.MemoryMB, "m", 512, "memory in MiB")
	flag.Parse()
	c.Mode = qemu.Mode(mode)
	if c.Vars == "" && c.Image != "" {
		c.Vars = c.Image + ".vars"
	}
	args, err := qemu.Command(c)
	if err == nil {
		err = qemu.PrepareVars(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qemu:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "==>", strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "qemu:", err)
		os.Exit(1)
	}
}
