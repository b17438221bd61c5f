// Command mediabench loads a media relay with concurrent bidirectional
// G.711-like calls (50 packets/s each way, 172-byte RTP) and ramps the call
// count to the knee: the last step with < 0.1 % loss and p99 latency ≤ 5 ms.
// It drives umedge's media engine and rtpengine (userspace forwarding) the
// same way, over rtpengine's ng protocol, each pinned to its own CPU, and
// prints loss, latency and the server's CPU time per relayed packet.
//
//	taskset -c 0 mediabench [-servers umedge,rtpengine] [-modes rtp,srtp] [-from 100] [-step 100]
//
// With -netns the generator and the server run in two network namespaces
// joined by a veth (the path a real interface takes, which loopback does
// not), and the server umedge-tc is umedge with the kernel fast path
// (media.fast_path = "tc"): the kernel relays, so besides the server
// process's CPU the table shows the whole machine's busy CPU per relayed
// packet (allµs/pkt, the generator included: compare servers by it); the
// server umedge-xdp is umedge sending through AF_XDP (media.send_path =
// "xdp").
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/media/fastpath"
	"golang.org/x/sys/unix"
)

func main() {
	serve := flag.String("serve", "", "internal: run the engine behind ng on this address")
	portMin := flag.Int("port-min", 30000, "server media ports: first")
	portMax := flag.Int("port-max", 59999, "server media ports: last")
	servers := flag.String("servers", "rtpengine,umedge", "servers to load, in order: rtpengine, umedge, umedge-tc, umedge-xdp (the last two under -netns); umedge-profiled also writes mediabench-umedge.prof; direct is the generator alone")
	modes := flag.String("modes", "rtp,srtp", "rtp: RTP⇄RTP; srtp: RTP⇄SRTP (the B side SDES AES_CM_128_HMAC_SHA1_80)")
	from := flag.Int("from", 100, "first step, calls")
	step := flag.Int("step", 100, "ramp step, calls")
	maxCalls := flag.Int("max", 5000, "stop ramping here")
	window := flag.Duration("window", 5*time.Second, "measured time per step (after 1 s of warm-up)")
	flag.IntVar(&serverCPU, "server-cpu", 1, "CPU the server is pinned to (taskset); run mediabench itself under taskset -c on another")
	rtpengine := flag.String("rtpengine", "rtpengine", "rtpengine binary")
	cpuProfile := flag.String("cpuprofile", "", "with -serve: write a CPU profile of the engine here")
	profileFor := flag.Duration("profile-for", 10*time.Second, "with -cpuprofile: how long")
	inNetns := flag.Bool("netns", false, "run generator and server in two network namespaces on a veth (needed by umedge-tc)")
	gen := flag.String("gen-addr", "127.0.0.1", "internal (set by -netns): the generator's address")
	srv := flag.String("srv-addr", "127.0.0.1", "internal (set by -netns): the server's address")
	flag.StringVar(&srvNetns, "srv-netns", "", "internal (set by -netns): the server's network namespace")
	fastPath := flag.String("fast-path", "off", "with -serve: the engine's media.fast_path")
	sendPath := flag.String("send-path", media.SendPathSocket, "with -serve: the engine's media.send_path")
	flag.BoolVar(&steerRPS, "rps", true, "with -netns: each namespace's veth receives on its own side's CPU (RPS), as a NIC's queue interrupt would; false leaves all receive work on the sending CPU")
	flag.Parse()
	var err error
	if genAddr, err = netip.ParseAddr(*gen); err == nil {
		srvAddr, err = netip.ParseAddr(*srv)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		os.Exit(2)
	}
	if *inNetns && *serve == "" {
		os.Exit(runInNetns())
	}

	if *serve != "" {
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				fmt.Fprintln(os.Stderr, "mediabench:", err)
				os.Exit(1)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "mediabench:", err)
				os.Exit(1)
			}
			go func() {
				time.Sleep(*profileFor)
				pprof.StopCPUProfile()
				f.Close()
			}()
		}
		if err := serveNG(*serve, *portMin, *portMax, srvAddr, fastpath.Mode(*fastPath), *sendPath); err != nil {
			fmt.Fprintln(os.Stderr, "mediabench serve:", err)
			os.Exit(1)
		}
		return
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("mediabench: %s, G.711 172-byte RTP, 50 pkt/s each way per call, server on CPU %d, %s per step, loadavg %s",
		time.Now().UTC().Format(time.RFC3339), serverCPU, *window, load)
	if genCPU = ownCPU(); genCPU < 0 {
		fmt.Println("mediabench: not pinned to one CPU (taskset -c N): the gen% and srv% columns are left out")
	}
	fmt.Printf("%-9s %-4s %6s %9s %9s %7s %7s %7s %9s %6s %9s %9s %6s %6s\n", "server", "mode", "calls", "sent", "recv", "loss%", "p50ms", "p99ms", "cpuµs/pkt", "cpu%", "allµs/pkt", "bpfµs/pkt", "gen%", "srv%")
	// The generator alone (A and B talk directly) at the first step: its
	// own latency, the part of the servers' figures that is not theirs.
	if _, _, err := ramp("direct", "rtp", *rtpengine, serverCPU, *portMin, *portMax, *from, *step, *from, *window); err != nil {
		fmt.Fprintln(os.Stderr, "mediabench: direct:", err)
		os.Exit(1)
	}
	type key struct{ srv, mode string }
	knees := map[key]int{}
	steps := map[key]map[int]result{}
	for _, mode := range strings.Split(*modes, ",") {
		for _, srv := range strings.Split(*servers, ",") {
			knee, rs, err := ramp(srv, mode, *rtpengine, serverCPU, *portMin, *portMax, *from, *step, *maxCalls, *window)
			if err != nil {
				fmt.Fprintf(os.Stderr, "mediabench: %s %s: %v\n", srv, mode, err)
				os.Exit(1)
			}
			knees[key{srv, mode}], steps[key{srv, mode}] = knee, rs
		}
	}
	fmt.Println()
	for _, mode := range strings.Split(*modes, ",") {
		for _, srv := range []string{"umedge", "umedge-tc", "umedge-xdp"} {
			compare(srv, mode, knees[key{srv, mode}], knees[key{"rtpengine", mode}], steps[key{srv, mode}], steps[key{"rtpengine", mode}], *from, *step, *maxCalls)
		}
	}
}

// compare prints srv's knee and CPU per packet against rtpengine's.
func compare(srv, mode string, u, r int, us, rs map[int]result, from, step, maxCalls int) {
	if us == nil || rs == nil {
		return
	}
	fmt.Printf("%s: knee %s %d calls, rtpengine %d calls", mode, srv, u, r)
	if r > 0 {
		fmt.Printf(" (%.2f×)", float64(u)/float64(r))
	}
	fmt.Println()
	fmt.Printf("%s: CPU µs per relayed packet, %s / rtpengine at the same load (server process; whole machine):", mode, srv)
	for calls := from; calls <= maxCalls; calls += step {
		a, okA := us[calls]
		b, okB := rs[calls]
		if !okA || !okB {
			break
		}
		fmt.Printf(" %d calls %.2f/%.2f; %.2f/%.2f;", calls, a.cpuPerPacket, b.cpuPerPacket, a.allPerPacket, b.allPerPacket)
	}
	fmt.Println()
}

// ramp starts one server and steps the call count up until two steps in a
// row fail the criteria (one failed step on this shared machine is as often
// a neighbour's noise as the knee). It returns the knee, the last step that
// passed, and every step's result.
func ramp(srv, mode, rtpengineBin string, cpu, portMin, portMax, from, step, maxCalls int, window time.Duration) (int, map[int]result, error) {
	ngAddr := netip.AddrPortFrom(srvAddr, uint16(22000+os.Getpid()%1000)).String() //nolint:gosec // < 23000
	var cmd *exec.Cmd
	switch srv {
	case "umedge-profiled":
		self, _ := os.Executable()
		cmd = exec.Command("taskset", "-c", strconv.Itoa(cpu), self, "-serve", ngAddr, "-cpuprofile", "mediabench-umedge.prof",
			"-profile-for", window.String(), "-port-min", strconv.Itoa(portMin), "-port-max", strconv.Itoa(portMax))
	case "umedge", "umedge-tc", "umedge-xdp":
		if srv != "umedge" && srvNetns == "" {
			return 0, nil, fmt.Errorf("%s needs -netns: neither TC nor AF_XDP runs on loopback", srv)
		}
		fp, sp := "off", media.SendPathSocket
		switch srv {
		case "umedge-tc":
			fp = "tc"
		case "umedge-xdp":
			sp = media.SendPathXDP
		}
		self, _ := os.Executable()
		cmd = exec.Command("taskset", "-c", strconv.Itoa(cpu), self, "-serve", ngAddr, "-srv-addr", srvAddr.String(), "-fast-path", fp,
			"-send-path", sp, "-port-min", strconv.Itoa(portMin), "-port-max", strconv.Itoa(portMax))
	case "rtpengine":
		cmd = exec.Command("taskset", "-c", strconv.Itoa(cpu), rtpengineBin, "--config-file=none", "--foreground", "--log-stderr",
			"--log-level=3", "--table=-1", "--interface="+srvAddr.String(), "--listen-ng="+ngAddr,
			"--port-min="+strconv.Itoa(portMin), "--port-max="+strconv.Itoa(portMax), "--num-threads=1")
	case "direct":
		if mode != "rtp" {
			return 0, nil, fmt.Errorf("direct (the generator alone, its own latency) runs rtp only")
		}
	default:
		return 0, nil, fmt.Errorf("unknown server %q", srv)
	}
	var ng *ngClient
	pid := os.Getpid()
	if cmd != nil && srvNetns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", srvNetns}, cmd.Args...)...) // ip and taskset exec: the pid is the server's
	}
	if cmd != nil {
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a killed mediabench leaves no server behind
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		defer func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait() // killed: the error says so
		}()
		pid = cmd.Process.Pid
		var err error
		if ng, err = dialNG(ngAddr); err != nil {
			return 0, nil, err
		}
		if err := waitReady(ng); err != nil {
			return 0, nil, err
		}
	}
	if srv == "umedge-tc" {
		// The kernel's BPF run-time statistics: the program's own CPU time
		// per packet (bpfµs/pkt), which no process's CPU time contains.
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			return 0, nil, fmt.Errorf("enable BPF statistics: %w", err)
		}
		defer func() { _ = stats.Close() }()
	}
	knee, failed := 0, 0
	results := map[int]result{}
	for calls := from; calls <= maxCalls && failed < 2; calls += step {
		r, err := runStep(ng, pid, mode == "srtp", calls, window, fmt.Sprintf("%s-%s-%d", srv, mode, calls))
		if err != nil {
			return 0, nil, err
		}
		fmt.Printf("%-9s %-4s %6d %9d %9d %7.3f %7.2f %7.2f %9.2f %6.1f %9.2f %9.2f %6.1f %6.1f\n", srv, mode, calls, r.sent, r.received,
			r.loss*100, r.p50, r.p99, r.cpuPerPacket, r.cpuShare*100, r.allPerPacket, r.bpfPerPacket, r.genBusy*100, r.srvBusy*100)
		results[calls] = r
		if r.loss >= 0.001 || r.p99 > 5 {
			failed++
			continue
		}
		knee, failed = calls, 0
	}
	return knee, results, nil
}

func waitReady(ng *ngClient) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := ng.call(map[string]any{"command": "ping"}); err == nil || strings.Contains(err.Error(), "pong") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server did not answer ng ping")
}

type result struct {
	sent, received uint64
	loss, p50, p99 float64
	cpuPerPacket   float64 // µs of server CPU per relayed packet
	cpuShare       float64 // server CPU time / wall time
	allPerPacket   float64 // µs of the whole machine's busy CPU per relayed packet, generator included
	bpfPerPacket   float64 // µs the fast-path program ran per packet it saw (kernel BPF statistics)
	// The busy share of the generator's CPU and of the server's over the
	// window (/proc/stat, softirq included: on a veth the kernel fast
	// path's work is the sending CPU's, the generator's). A generator CPU
	// near 100 % is the generator, not the server, giving out.
	genBusy, srvBusy float64
}

func runStep(ng *ngClient, pid int, secure bool, calls int, window time.Duration, run string) (result, error) {
	g := &generator{srtpMode: secure, start: time.Now()}
	var err error
	if g.connA, g.addrA, err = openGenSocket(); err != nil {
		return result{}, err
	}
	defer func() { _ = g.connA.Close() }()
	if g.connB, g.addrB, err = openGenSocket(); err != nil {
		return result{}, err
	}
	defer func() { _ = g.connB.Close() }()
	if err := g.setup(ng, calls, run); err != nil {
		return result{}, err
	}
	defer g.teardown(ng, run)
	stopSend, stopRecv := make(chan struct{}), make(chan struct{})
	doneRecv := make(chan struct{}, 2)
	go func() { g.receive(g.connA, false, stopRecv); doneRecv <- struct{}{} }()
	go func() { g.receive(g.connB, secure, stopRecv); doneRecv <- struct{}{} }()
	sendDone := make(chan struct{})
	go func() { g.send(stopSend); close(sendDone) }()
	time.Sleep(time.Second)      // warm-up: latching, contexts
	cpu0, cpuErr := procCPU(pid) // on failure, stop the load before returning
	busy0 := machineBusy()
	gen0, srv0 := cpuBusy(fmt.Sprint("cpu", genCPU)), cpuBusy(fmt.Sprint("cpu", serverCPU))
	prog0, runs0 := programRuntime()
	sent0, recv0 := g.sent.Load(), g.received.Load()
	t0 := time.Now()
	g.measure.Store(true)
	time.Sleep(window)
	g.measure.Store(false)
	cpu1, _ := procCPU(pid)
	busy1 := machineBusy()
	gen1, srv1 := cpuBusy(fmt.Sprint("cpu", genCPU)), cpuBusy(fmt.Sprint("cpu", serverCPU))
	prog1, runs1 := programRuntime()
	wall := time.Since(t0)
	sent1, recv1 := g.sent.Load(), g.received.Load()
	close(stopSend)
	<-sendDone                         // before the teardown takes the calls away
	time.Sleep(300 * time.Millisecond) // drain what is in flight
	close(stopRecv)
	<-doneRecv
	<-doneRecv
	if cpuErr != nil {
		return result{}, fmt.Errorf("server CPU time: %w", cpuErr)
	}
	r := result{sent: g.sent.Load(), received: g.received.Load()}
	if r.sent > 0 && r.received < r.sent {
		r.loss = float64(r.sent-r.received) / float64(r.sent)
	}
	r.p50, r.p99 = g.percentiles()
	if d := recv1 - recv0; d > 0 {
		r.cpuPerPacket = float64((cpu1 - cpu0).Microseconds()) / float64(d)
		r.allPerPacket = float64((busy1 - busy0).Microseconds()) / float64(d)
	}
	if runs1 > runs0 {
		r.bpfPerPacket = float64(prog1-prog0) / 1e3 / float64(runs1-runs0)
	}
	_ = sent1 - sent0
	r.cpuShare = float64(cpu1-cpu0) / float64(wall)
	r.genBusy, r.srvBusy = float64(gen1-gen0)/float64(wall), float64(srv1-srv0)/float64(wall)
	return r, nil
}

// procCPU is the user+system time of a process, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // CLK_TCK = 100 on Linux
}
