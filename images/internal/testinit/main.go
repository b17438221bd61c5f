// Command testinit is a TEST-ONLY PID 1 for the image boot tests, standing
// in for appliance/cmd/init until that lands: it mounts the kernel file
// systems, brings up eth0 as 10.0.2.15/24 (qemu user networking), starts
// edged, and once edged answers a SIP OPTIONS prints
//
//	UMEDGE READY slot=<x> uptime=<seconds>
//
// and blesses the booted boot entry (firmware/bootslot). If edged does not
// answer within the health deadline it prints UMEDGE HEALTH FAILED and
// reboots without blessing, so that systemd-boot falls back to the other
// slot. It does nothing else a product init must do (no firewall, no
// data partition, no watchdog, no supervision).
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/install"
	"github.com/umedge/umedge/images/internal/sipprobe"
)

const (
	healthDeadline = 30 * time.Second
	espDir         = "/boot"
	guestAddr      = "10.0.2.15"
)

func main() {
	start := time.Now()
	mountKernelFS()
	console()
	slot := bootslot.CmdlineSlot(readFile("/proc/cmdline"))
	if slot == "" {
		slot = "initramfs"
	}
	say("testinit: slot=%s uptime=%s", slot, uptime(start))
	if err := network(); err != nil {
		say("testinit: network: %v", err)
	}
	haveESP := false
	if slot != "initramfs" {
		haveESP = mountESP()
	}

	edged := exec.Command("/usr/bin/edged", "-config", "/etc/umedge/umedge.toml")
	edged.Stdout, edged.Stderr = os.Stdout, os.Stderr
	edged.Dir = "/"
	exited := make(chan struct{})
	if err := edged.Start(); err != nil {
		say("testinit: start edged: %v", err)
		close(exited)
	} else {
		go func() {
			say("testinit: edged exited: %v", edged.Wait())
			close(exited)
		}()
	}

	if !healthy(healthDeadline, exited) {
		say("UMEDGE HEALTH FAILED slot=%s", slot)
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			say("testinit: reboot: %v", err)
		}
		select {}
	}
	say("UMEDGE READY slot=%s uptime=%s", slot, uptime(start))
	if haveESP {
		if err := bootslot.Bless(espDir); err != nil {
			say("UMEDGE BLESS FAILED slot=%s: %v", slot, err)
		} else {
			unix.Sync()
			say("UMEDGE BLESSED slot=%s", slot)
		}
	}
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil {
			time.Sleep(time.Second)
		}
	}
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// uptime is the kernel's idea of time since power-on, as the boot test's
// figure; the init's own start is kept for when /proc/uptime is missing.
func uptime(start time.Time) string {
	if f := strings.Fields(readFile("/proc/uptime")); len(f) > 0 {
		return f[0]
	}
	return fmt.Sprintf("%.2f", time.Since(start).Seconds())
}

func mountKernelFS() {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755) //nolint:gosec // mount points of the guest's root; the mount below reports a missing one
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "testinit: mount %s: %v\n", m.dst, err)
		}
	}
	if _, err := os.Stat("/sys/firmware/efi/efivars"); err == nil {
		_ = unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", 0, "") // the tests that need it say so
	}
}

// console points stdout and stderr at /dev/console (devtmpfs now has it).
func console() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return
	}
	_ = unix.Dup2(int(f.Fd()), 1) // without a console there is nowhere to say so
	_ = unix.Dup2(int(f.Fd()), 2)
}

func mountESP() bool {
	dev, err := install.FindPartition("ESP")
	if err != nil {
		say("testinit: %v", err)
		return false
	}
	if err := unix.Mount(dev, espDir, "vfat", 0, ""); err != nil {
		say("testinit: mount ESP %s: %v", dev, err)
		return false
	}
	return true
}

func network() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	if err := ifUp(fd, "lo"); err != nil {
		return err
	}
	ifr, err := unix.NewIfreq("eth0")
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(net.ParseIP(guestAddr).To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("eth0 address: %w", err)
	}
	ifr, _ = unix.NewIfreq("eth0")
	if err := ifr.SetInet4Addr(net.IPv4(255, 255, 255, 0).To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("eth0 netmask: %w", err)
	}
	return ifUp(fd, "eth0")
}

func ifUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// healthy sends SIP OPTIONS to edged over UDP until it answers 200; it
// gives up at the deadline or when edged has exited.
func healthy(deadline time.Duration, exited <-chan struct{}) bool {
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		if optionsOK(guestAddr + ":5060") {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func optionsOK(addr string) bool {
	_, err := sipprobe.Options("udp", addr, 500*time.Millisecond)
	return err == nil
}
