package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Set by flags: where the generator and the server bind, and the server's
// namespace under -netns.
var (
	genAddr, srvAddr netip.Addr
	srvNetns         string
	// The CPUs the generator (this process: taskset) and the server are
	// pinned to.
	genCPU, serverCPU int
	// steerRPS: under -netns, the receive work of each side's veth runs on
	// that side's CPU (-rps).
	steerRPS bool
)

// runInNetns makes the two namespaces and the veth between them, runs this
// benchmark again inside the generator's (with the same arguments, the
// server's namespace and both addresses added) and removes them; it
// returns the exit status.
func runInNetns() int {
	tag := strconv.Itoa(os.Getpid())
	gen, srv := "mb-gen-"+tag, "mb-srv-"+tag
	g, s := netip.MustParseAddr("10.251.0.2"), netip.MustParseAddr("10.251.0.1")
	defer func() {
		for _, n := range []string{gen, srv} {
			_ = exec.Command("ip", "netns", "del", n).Run() // best effort: the veth goes with them
		}
	}()
	steps := [][]string{
		{"netns", "add", gen}, {"netns", "add", srv},
		{"-n", gen, "link", "set", "lo", "up"}, {"-n", srv, "link", "set", "lo", "up"},
		{"-n", gen, "link", "add", "g0", "type", "veth", "peer", "name", "s0", "netns", srv},
		{"-n", gen, "addr", "add", g.String() + "/24", "dev", "g0"}, {"-n", srv, "addr", "add", s.String() + "/24", "dev", "s0"},
		{"-n", gen, "link", "set", "g0", "up"}, {"-n", srv, "link", "set", "s0", "up"},
	}
	for _, st := range steps {
		if out, err := exec.Command("ip", st...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "mediabench: ip %s: %v\n%s", strings.Join(st, " "), err, out)
			return 1
		}
	}
	if steerRPS {
		if err := steerReceive(map[string]string{gen: "g0", srv: "s0"}, map[string]int{gen: ownCPU(), srv: serverCPU}); err != nil {
			fmt.Fprintln(os.Stderr, "mediabench:", err)
			return 1
		}
	}
	self, _ := os.Executable()
	var args []string
	for _, a := range os.Args[1:] {
		if a != "-netns" && a != "--netns" && a != "-netns=true" {
			args = append(args, a)
		}
	}
	args = append(args, "-gen-addr", g.String(), "-srv-addr", s.String(), "-srv-netns", srv)
	cmd := exec.Command("ip", append([]string{"netns", "exec", gen, self}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Interrupted, the run still removes its namespaces (the deferred
	// deletes): the generator is stopped and waited for first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	time.Sleep(100 * time.Millisecond) // the veth's carrier
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		return 1
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case sig := <-sigs:
		_ = cmd.Process.Kill()
		err = fmt.Errorf("stopped by %v (the generator: %w)", sig, <-waited)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		return 1
	}
	return 0
}

// steerReceive sets the RPS CPU mask of each namespace's veth (by
// namespace) to that side's CPU. A veth delivers a packet to its peer in
// the softirq of the CPU that sent it, so without this the server's
// receive path, and the kernel fast path's whole work, would run on the
// generator's CPU and load it; with it each side pays for the packets it
// receives, as it would behind a NIC whose queue interrupt is on its CPU.
// A side not pinned to one CPU (-1) is left as it is.
func steerReceive(dev map[string]string, cpu map[string]int) error {
	for ns, d := range dev {
		c := cpu[ns]
		if c < 0 {
			continue
		}
		// sysfs shows the namespace of whoever mounted it: ip netns exec
		// mounts the namespace's own.
		path := "/sys/class/net/" + d + "/queues/rx-0/rps_cpus"
		mask := fmt.Sprintf("%x", uint64(1)<<c)
		if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "echo "+mask+" > "+path).CombinedOutput(); err != nil {
			return fmt.Errorf("steer %s's receive to CPU %d (%s): %w\n%s", d, c, path, err, out)
		}
	}
	return nil
}

// machineBusy is the busy time of all CPUs so far (/proc/stat: everything
// but idle and iowait).
func machineBusy() time.Duration { return cpuBusy("cpu") }

// cpuBusy is the busy time so far of the /proc/stat line named name ("cpu"
// for all CPUs, "cpu0" for CPU 0): user, nice, system, irq, softirq and
// steal (time the hypervisor gave to another guest: not ours, but not free
// either), not idle or iowait.
func cpuBusy(name string) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != name {
			continue
		}
		var busy int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 && i < 8 { // user nice system [idle iowait] irq softirq steal
				busy += n
			}
		}
		return time.Duration(busy) * 10 * time.Millisecond // USER_HZ = 100
	}
	return 0
}

// ownCPU is the one CPU this process is pinned to (taskset -c N), or -1.
func ownCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() != 1 {
		return -1
	}
	for i := 0; ; i++ {
		if set.IsSet(i) {
			return i
		}
	}
}

// progName is the fast-path program's name in the kernel (fastpath.c).
const progName = "umedge_fastpath"

// programRuntime sums the kernel's run time and run count (BPF statistics,
// enabled by ramp for umedge-tc) of the loaded programs named progName.
func programRuntime() (time.Duration, uint64) {
	var rt time.Duration
	var n uint64
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return rt, n // ErrNotExist: the last one
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		if info, err := p.Info(); err == nil && info.Name == progName {
			if st, err := p.Stats(); err == nil {
				rt += st.Runtime
				n += st.RunCount
			}
		}
		_ = p.Close()
	}
}
