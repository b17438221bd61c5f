// Package qemu boots appliance images under qemu (TCG, no KVM needed) with
// SIP and the admin port forwarded to 127.0.0.1, and watches the serial
// console: the engine of `make qemu` and of the boot tests.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode is how the VM is booted.
type Mode string

const (
	// ModeUEFI boots the disk image through UEFI firmware and systemd-boot.
	ModeUEFI Mode = "uefi"
	// ModeKernel boots a kernel and initramfs directly (fast dev loop).
	ModeKernel Mode = "kernel"
)

// Config is one VM.
type Config struct {
	Arch      string // amd64 or arm64
	Mode      Mode
	Image     string // disk image (ModeUEFI), written to in place
	Vars      string // UEFI variable store (ModeUEFI); created from the template if missing
	Kernel    string // ModeKernel
	Initramfs string // ModeKernel
	SIPPort   int    // host port forwarded to guest 5060, UDP and TCP
	AdminPort int    // host port forwarded to guest 9060 (0 = none)
	MemoryMB  int    // default 512
	NoReboot  bool   // a guest reboot ends qemu
	// Append is further kernel arguments of ModeKernel, after the
	// defaults (e.g. "loglevel=7" to see the kernel's own lines).
	Append string
	// Extra is further qemu arguments, e.g. "-icount", "shift=0" for a
	// guest clock that counts instructions (measurements, not tests).
	Extra []string
	// ClosedPort is a host port forwarded to guest TCP port ClosedGuestPort,
	// which no listener opens: the firewall's drop is seen from the host
	// (0 = none).
	ClosedPort int
	// Netdev replaces the user-mode network (and with it the forwards
	// above) with this -netdev (its id must be n0), e.g.
	// "socket,id=n0,udp=127.0.0.1:P,localaddr=127.0.0.1:Q": the VM's
	// Ethernet frames as UDP datagrams, for a test to be its peer.
	Netdev string
}

// ClosedGuestPort is the guest port Config.ClosedPort reaches: TCP port 1
// (tcpmux), which the appliance neither listens on nor opens.
const ClosedGuestPort = 1

type machine struct {
	binary   []string
	console  string
	append   string // kernel arguments of ModeKernel beyond the console
	code     string // firmware code, read-only
	varsTmpl string
}

var machines = map[string]machine{
	"amd64": {
		// The i6300ESB is the watchdog of Intel chipsets, which the
		// images' kernel drives (CONFIG_I6300ESB_WDT): the init arms it as
		// on a box, and a hung init resets the VM.
		binary:  []string{"qemu-system-x86_64", "-M", "q35", "-device", "i6300esb"},
		console: "ttyS0",
		// The IO-APIC timer check fails under TCG on a loaded host and
		// panics the kernel (images/diskimage passes the same flag).
		append:   "no_timer_check",
		code:     "/usr/share/OVMF/OVMF_CODE_4M.fd",
		varsTmpl: "/usr/share/OVMF/OVMF_VARS_4M.fd",
	},
	"arm64": {
		// cortex-a57 is about a third faster under TCG than -cpu max.
		binary:   []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57"},
		console:  "ttyAMA0",
		code:     "/usr/share/AAVMF/AAVMF_CODE.fd",
		varsTmpl: "/usr/share/AAVMF/AAVMF_VARS.fd",
	},
}

var (
	errUnknownArch  = errors.New("qemu: unknown arch")
	errUnknownMode  = errors.New("qemu: unknown mode")
	errUEFIConfig   = errors.New("qemu: uefi mode needs an image and a vars file")
	errKernelConfig = errors.New("qemu: kernel mode needs a kernel and an initramfs")
	errNoPort       = errors.New("qemu: no port of 127.0.0.1 free for both UDP and TCP")
)

// Command returns the qemu command line for c.
func Command(c Config) ([]string, error) {
	m, ok := machines[c.Arch]
	if !ok {
		return nil, fmt.Errorf("%w %q", errUnknownArch, c.Arch)
	}
	mem := c.MemoryMB
	if mem == 0 {
		mem = 512
	}
	args := append([]string{}, m.binary...)
	args = append(args, "-accel", "tcg", "-smp", "1", "-m", fmt.Sprint(mem),
		// -nodefaults: no VGA, CD-ROM, floppy or parallel port to probe
		// at boot; the serial console is named below.
		"-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none")
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	switch c.Mode {
	case ModeUEFI:
		if c.Image == "" || c.Vars == "" {
			return nil, errUEFIConfig
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+m.code,
			"-drive", "if=pflash,format=raw,unit=1,file="+c.Vars,
			"-drive", "if=virtio,format=raw,file="+c.Image)
	case ModeKernel:
		if c.Kernel == "" || c.Initramfs == "" {
			return nil, errKernelConfig
		}
		args = append(args, "-kernel", c.Kernel, "-initrd", c.Initramfs,
			"-append", strings.Join(strings.Fields("console="+m.console+" quiet panic=-1 "+m.append+" "+c.Append), " "))
	default:
		return nil, fmt.Errorf("%w %q (uefi or kernel)", errUnknownMode, c.Mode)
	}
	fwd := fmt.Sprintf("user,id=n0,hostfwd=udp:127.0.0.1:%[1]d-:5060,hostfwd=tcp:127.0.0.1:%[1]d-:5060", c.SIPPort)
	if c.AdminPort != 0 {
		fwd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:9060", c.AdminPort)
	}
	if c.ClosedPort != 0 {
		fwd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", c.ClosedPort, ClosedGuestPort)
	}
	// virtio-rng stands in for the hardware RNG (RDRAND, TPM) a real box
	// has: without it the amd64 guest's getrandom blocks edged for seconds
	// until the kernel's entropy pool is ready.
	// romfile= leaves out the NIC's iPXE option ROM: the firmware has no
	// network boot to offer, and loading the ROM costs seconds under TCG.
	if c.Netdev != "" {
		fwd = c.Netdev
	}
	args = append(args, "-netdev", fwd, "-device", "virtio-net-pci,netdev=n0,romfile=", "-device", "virtio-rng-pci")
	return append(args, c.Extra...), nil
}

// PrepareVars copies the firmware's empty variable store to c.Vars unless
// it exists (a second boot of the same machine keeps its variables).
func PrepareVars(c Config) error {
	if c.Mode != ModeUEFI {
		return nil
	}
	if _, err := os.Stat(c.Vars); err == nil {
		return nil
	}
	m := machines[c.Arch]
	tmpl, err := os.ReadFile(m.varsTmpl)
	if err != nil {
		return fmt.Errorf("qemu: UEFI variable template (Debian ovmf / qemu-efi-aarch64): %w", err)
	}
	return os.WriteFile(c.Vars, tmpl, 0o600) //nolint:gosec // c.Vars is the test's own scratch path
}

// VM is a running qemu.
type VM struct {
	cmd     *exec.Cmd
	Started time.Time
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	done    chan struct{}
	waitErr error
}

// Start boots c. Every console line is also written to log (may be nil).
func Start(c Config, log io.Writer) (*VM, error) {
	args, err := Command(c)
	if err != nil {
		return nil, err
	}
	if err := PrepareVars(c); err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	dieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	vm := &VM{cmd: cmd, changed: make(chan struct{}, 1), done: make(chan struct{})}
	vm.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", filepath.Base(args[0]), err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if log != nil {
				fmt.Fprintln(log, line)
			}
			vm.mu.Lock()
			vm.lines = append(vm.lines, line)
			vm.mu.Unlock()
			select {
			case vm.changed <- struct{}{}:
			default:
			}
		}
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		vm.waitErr = err
		close(vm.done)
	}()
	return vm, nil
}

// ErrExited means qemu ended before the console showed what was awaited.
var ErrExited = errors.New("qemu: exited")

// WaitFor waits until a console line from index from on matches re and
// returns its index and the line.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp, from int) (int, string, error) {
	for {
		vm.mu.Lock()
		for i := from; i < len(vm.lines); i++ {
			if re.MatchString(vm.lines[i]) {
				line := vm.lines[i]
				vm.mu.Unlock()
				return i, line, nil
			}
		}
		from = max(from, len(vm.lines))
		vm.mu.Unlock()
		select {
		case <-vm.changed:
		case <-vm.done:
			// drain what the reader appended before it closed done
			vm.mu.Lock()
			n := len(vm.lines)
			vm.mu.Unlock()
			if n > from {
				continue
			}
			err := fmt.Errorf("%w waiting for %q", ErrExited, re)
			if vm.waitErr != nil {
				err = fmt.Errorf("%w: %w", err, vm.waitErr)
			}
			return 0, "", err
		case <-ctx.Done():
			return 0, "", fmt.Errorf("waiting for %q: %w", re, ctx.Err())
		}
	}
}

// CPUTime is the CPU time (user and system) qemu has used so far: under
// TCG the guest's own work, which a busy host stretches much less than it
// stretches the wall time. Zero when it cannot be read.
func (vm *VM) CPUTime() time.Duration {
	if vm.cmd.Process == nil {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", vm.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	return cpuTimeOf(string(stat))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// cpuTimeOf reads utime + stime out of a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces: fields are
// counted from the last ')'.
func cpuTimeOf(stat string) time.Duration {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// FreePort returns a port of 127.0.0.1 free for both UDP and TCP, for
// Config.SIPPort.
func FreePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = l.Close() // only probed
		if err == nil {
			_ = u.Close()
			return port, nil
		}
	}
	return 0, errNoPort
}

// Done is closed when qemu has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Lines returns the console so far.
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// Stop kills qemu (a power cut for the guest) and waits for it.
func (vm *VM) Stop() {
	if vm.cmd.Process != nil {
		_ = vm.cmd.Process.Kill() // it may have exited already; done is closed either way
	}
	<-vm.done
}
