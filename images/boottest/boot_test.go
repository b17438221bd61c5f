//go:build integration

package boottest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/imagefile"
	"github.com/umedge/umedge/images/internal/qemu"
	"github.com/umedge/umedge/images/internal/sipprobe"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, a := range built {
		os.RemoveAll(a.dir)
	}
	if toolsDir != "" {
		os.RemoveAll(toolsDir)
	}
	os.Exit(code)
}

var qemuBinary = map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}

func needQemu(t *testing.T, arch string) {
	t.Helper()
	if _, err := exec.LookPath(qemuBinary[arch]); err != nil {
		t.Skipf("no %s on this host (make test installs it: TEST_DEBS)", qemuBinary[arch])
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := qemu.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// consoleLog keeps a VM's console in the test's temp dir and prints it if
// the test fails.
func consoleLog(t *testing.T, name string) io.Writer {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".console")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p)
			t.Logf("console of %s:\n%s", name, b)
		}
	})
	return f
}

type boot struct {
	vm       *qemu.VM
	readyCPU time.Duration // qemu's CPU time when SIP answered
	port     int
	closed   int // host port forwarded to a guest port the firewall drops
	at       int // console line index to look from
}

func startVM(t *testing.T, c qemu.Config, name string) *boot {
	t.Helper()
	c.SIPPort, c.ClosedPort = freePort(t), freePort(t)
	vm, err := qemu.Start(c, consoleLog(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Stop)
	return &boot{vm: vm, port: c.SIPPort, closed: c.ClosedPort}
}

// expect waits for a console line matching pattern after the last one
// matched.
func (b *boot) expect(t *testing.T, pattern string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	i, line, err := b.vm.WaitFor(ctx, regexp.MustCompile(pattern), b.at)
	if err != nil {
		t.Fatalf("after %.1fs: %v", time.Since(b.vm.Started).Seconds(), err)
	}
	b.at = i + 1
	return line
}

// sipReady polls OPTIONS over UDP through the forwarded port until edged
// answers and returns the host time from power-on; then TCP must answer
// too.
func (b *boot) sipReady(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", b.port)
	deadline := time.Now().Add(timeout)
	for {
		_, err := sipprobe.Options("udp", addr, 250*time.Millisecond)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SIP OPTIONS answer over UDP on %s within %s: %v", addr, timeout, err)
		}
		// slirp refuses at once while the guest does not listen: pause, or
		// the probe loop takes the CPU the VM needs.
		select {
		case <-b.vm.Done():
			t.Fatalf("qemu exited before SIP answered on %s", addr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	ready := time.Since(b.vm.Started)
	b.readyCPU = b.vm.CPUTime()
	if line, err := sipprobe.Options("tcp", addr, 5*time.Second); err != nil {
		t.Fatalf("SIP OPTIONS over TCP on %s: %v", addr, err)
	} else {
		t.Logf("TCP OPTIONS answered: %s", line)
	}
	return ready
}

// dropped checks that a connection to a guest port nobody opens is
// dropped by the firewall. slirp accepts the host's connection at once
// and sends the SYN on to the guest: a guest without the ruleset answers
// RST and slirp closes the host's connection within milliseconds; with
// it, nothing comes back and the connection stays silent.
func (b *boot) dropped(t *testing.T) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", b.closed)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the forwarded closed port %s: %v", addr, err)
	}
	defer c.Close()
	const silent = 3 * time.Second
	_ = c.SetReadDeadline(time.Now().Add(silent))
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("guest TCP port %d answered after %s (read %d bytes, %v): not dropped, the firewall is not in force",
			qemu.ClosedGuestPort, time.Since(start).Round(time.Millisecond), n, err)
	}
	t.Logf("guest TCP port %d: no answer in %s (dropped)", qemu.ClosedGuestPort, silent)
}

// TestBootKernel boots kernel + initramfs (the fast mode) with the shipped
// init and config and needs SIP OPTIONS answered on 5060 through the
// forwarded port, UDP and TCP, the firewall loaded, and a port the config
// does not open dropped.
func TestBootKernel(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			needQemu(t, arch)
			a := build(t, arch)
			b := startVM(t, qemu.Config{Arch: arch, Mode: qemu.ModeKernel, Kernel: a.kernel, Initramfs: a.initramfs, NoReboot: true}, "kernel-"+arch)
			ready := b.sipReady(t, 90*time.Second)
			line := b.expect(t, `UMEDGE READY slot=`, 10*time.Second)
			fw := &boot{vm: b.vm} // the firewall comes up before edged: look from the start
			t.Logf("firewall: %s", fw.expect(t, `UMEDGE FIREWALL loaded rules=[1-9]`, 10*time.Second))
			// The shipped config runs the kernel fast path where it can
			// (auto): on the appliance kernel it does (TCX, CONFIG_NET_XGRESS,
			// JIT-compiled: images/kernel has CONFIG_BPF_JIT_ALWAYS_ON).
			t.Logf("fast path: %s", fw.expect(t, `media fast path on`, 10*time.Second))
			if arch == "amd64" { // qemu's arm64 virt machine has no watchdog device
				wd := &boot{vm: b.vm} // armed before edged starts: look from the start
				t.Logf("watchdog: %s", wd.expect(t, `hardware watchdog armed`, 10*time.Second))
			}
			b.dropped(t)
			t.Logf("%s kernel+initramfs: SIP OPTIONS answered %.1fs after power-on (host clock; qemu CPU %.1fs, load %s); console: %s",
				arch, ready.Seconds(), b.readyCPU.Seconds(), loadAverage(), line)
		})
	}
}

// TestBootUEFIUpdateRollback boots the disk image through UEFI firmware
// and systemd-boot: a good bundle installed into the image boots slot B,
// which blesses itself and stays after a power cycle; then a bundle whose
// edged cannot run boots once into A, never passes the init's health
// check, is not blessed, the init reboots after appliance.health_grace,
// and the firmware falls back to B by itself.
func TestBootUEFIUpdateRollback(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			needQemu(t, arch)
			a := build(t, arch)
			if a.bootloader == "" {
				t.Fatalf("no systemd-boot EFI binary for %s (%s)", arch, strings.Join(systemdBoot[arch], " or "))
			}
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.img")
			if err := run(dir, nil, "cp", "--sparse=always", a.image, img); err != nil {
				t.Fatal(err)
			}
			cfg := qemu.Config{Arch: arch, Mode: qemu.ModeUEFI, Image: img, Vars: filepath.Join(dir, "vars.fd")}

			good := a.bundle(t, a.root, 2)
			start := time.Now()
			installInto(t, a, img, good, "b")
			installed := time.Since(start)
			b := startVM(t, cfg, "update-"+arch)
			b.expect(t, `UMEDGE READY slot=b`, 3*time.Minute)
			b.expect(t, `UMEDGE BLESSED slot=b`, 30*time.Second)
			blessed, blessedCPU := time.Since(start), b.vm.CPUTime()
			ready := b.sipReady(t, 30*time.Second)
			b.vm.Stop()
			t.Logf("%s UEFI: install %.2fs, install → blessed %.1fs (qemu CPU %.1fs), power-on → SIP answered %.1fs (host clock, load %s)",
				arch, installed.Seconds(), blessed.Seconds(), blessedCPU.Seconds(), ready.Seconds(), loadAverage())
			wantEntries(t, img, "slot-a.conf", "slot-b.conf")

			b = startVM(t, cfg, "reboot-"+arch)
			b.expect(t, `UMEDGE READY slot=b`, 3*time.Minute)
			b.sipReady(t, 30*time.Second)
			b.vm.Stop()
			wantEntries(t, img, "slot-a.conf", "slot-b.conf")

			bad := a.bundle(t, a.badRoot, 3)
			installInto(t, a, img, bad, "a")
			b = startVM(t, cfg, "rollback-"+arch)
			b.expect(t, `UMEDGE BOOT slot=a`, 3*time.Minute)
			// edged of the bad bundle ends at every start: the init does
			// not wait out the grace (healthGrace) for it.
			b.expect(t, `UMEDGE UNHEALTHY after [0-9]+ starts of edged .* on trial slot a .*rebooting into the other slot`, 3*time.Minute)
			b.expect(t, `UMEDGE READY slot=b`, 3*time.Minute)
			b.sipReady(t, 30*time.Second)
			b.vm.Stop()
			t.Logf("%s UEFI: bad update rolled back to B %.1fs after power-on", arch, time.Since(b.vm.Started).Seconds())
			wantEntries(t, img, "slot-a+0-1.conf", "slot-b.conf")
		})
	}
}

// loadAverage is the host's 1, 5 and 15 minute load average: a boot time
// means little without it on a shared machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func installInto(t *testing.T, a *artifacts, img, bundlePath, wantSlot string) {
	t.Helper()
	out, err := exec.Command(a.fw, "install-image", "-image", img, "-trust", devTrust, "-compatible", "umedge-"+a.arch+"-v1", bundlePath).CombinedOutput()
	if err != nil {
		t.Fatalf("install-image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "into slot "+wantSlot) {
		t.Fatalf("install-image: %s, want slot %s", out, wantSlot)
	}
}

func wantEntries(t *testing.T, img string, want ...string) {
	t.Helper()
	im, err := imagefile.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	entries, err := bootslot.List(im.ESP)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.File)
	}
	gotS, wantS := strings.Join(sorted(got), " "), strings.Join(sorted(want), " ")
	if gotS != wantS {
		t.Fatalf("boot entries %s, want %s", gotS, wantS)
	}
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
