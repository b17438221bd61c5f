// Command sipbench measures the Call Router's 302 rate against Kamailio's stateless redirect, side by side.
//
// Two scenarios (-scenarios):
//
//   - single: one call repeated (scenario uac_302.xml: INVITE to mailbox
//     1001 from caller 4000, 302 with the expected Contact, ACK). Kamailio
//     answers every INVITE with the 302 and looks nothing up.
//   - mix: real-looking traffic (sipptest.WriteMix, scenario uac_mix.xml):
//     a distinct caller on every call, 80 % diverted to voice mail for a
//     -mailboxes directory (10,000 by default), 10 % direct calls, 9 %
//     unknown numbers, 1 % non-numeric callers; each call must get its
//     line's answer (302 with the mailbox's Contact, or 404). Kamailio
//     answers the same from the same directory in an htable loaded from
//     a db_text table; edged runs with the directory as umrouter's settings.
//
// For each scenario and transport it measures Kamailio first, then edged:
// the load generator runs pinned to one CPU at a fixed rate for -duration
// against a fresh server pinned to another CPU. The generator is SIPp
// (-generator sipp) or the Go UAC of core/internal/sipload (-generator
// go), which places the same CSV lines with the same checks at a small
// part of SIPp's CPU per call, so that it is not the limit; sipbench runs
// it as a child of its own binary (SIPBENCH_UAC=1), pinned as SIPp would
// be. In scenario b2bua the go generator is also the callees (sipload.UAS,
// one child process for both back-end hosts, SIPBENCH_UAC=uas), pinned
// with the caller. The rate doubles until a step loses
// -loss of its calls or cannot hold its rate, then is bisected. The table
// gives each server's highest passing rate, its failed-call fraction and
// peak resident memory at that rate, and the ratio edged/Kamailio.
//
// A third scenario, b2bua, is not part of the default run (make
// bench-b2bua runs it): the mix's calls as full calls through a proxy
// (see b2bua.go): edged with every pool a proxy pool runs them as a
// B2BUA, Kamailio as a stateful tm + rr proxy, both to callees on the
// mix's two back-end hosts (the go generator's callees, or SIPp's). It
// also measures the memory per active call.
//
//	go run ./core/cmd/sipbench -edged bin/edged -plugins bin/plugins
//	go run ./core/cmd/sipbench -servers kamailio -scenarios mix -transports udp
//	go run ./core/cmd/sipbench -scenarios b2bua -transports udp -start 500
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/umedge/umedge/core/internal/sipload"
	"github.com/umedge/umedge/core/internal/sipptest"
)

type options struct {
	edged, plugins, config string
	edgedBase              string // second edged binary, server "edged-base": before/after in one run
	kamailio               string
	kamcmd                 string
	rtpengine              string
	kamChildren            []int
	kamShmMB               int
	servers, transports    []string
	scenarios              []string
	mailboxes              int
	seed                   uint64
	start, step, max       int
	maxSteps               int
	duration               time.Duration
	recvTimeout            time.Duration
	loss                   float64
	sippCPU, serverCPU     string
	generator              string        // sipp or go: who places the calls of scenarios single and mix
	genConns               int           // go: TCP connections
	genTick                time.Duration // go: the sender's tick; 0 = sipload's default
	maxCalls               int
	out                    string
	// scenario b2bua
	hold              time.Duration // how long an answered call is up
	backendTransports []string      // SIP transports towards the callees, each measured
	backendTransport  string        // the one of a measurement
	noCDR             bool          // edged without CDRs
	activeCalls       int           // calls up at once for the memory measurement; 0 = none
	activeHold        time.Duration // their hold time
}

func main() {
	uacChild()
	var o options
	var servers, transports, scenarios, children, backendTransports string
	flag.StringVar(&o.edged, "edged", "bin/edged", "edged binary")
	flag.StringVar(&o.edgedBase, "edged-base", "", "another edged binary, measured as server "+serverEdgedBase+" (e.g. the tree before a change, in the same run as the new one)")
	flag.StringVar(&o.plugins, "plugins", "bin/plugins", "plugin directory, pinned by <dir>.sha256, as built by make plugins")
	flag.StringVar(&o.config, "config", "configs/umedge.toml", "shipped config the edged bench config is derived from")
	flag.StringVar(&o.kamailio, "kamailio", "kamailio", "kamailio binary")
	flag.StringVar(&o.kamcmd, "kamcmd", "kamcmd", "kamcmd binary: reads Kamailio's shared and pkg memory for the memory per active call")
	flag.StringVar(&o.rtpengine, "rtpengine", "rtpengine", "rtpengine binary, for server "+serverKamailioRTPEngine+" (scenario b2bua: Kamailio's stateful proxy with the media anchored in rtpengine)")
	flag.StringVar(&children, "kamailio-children", "2,4", "Kamailio children and tcp_children values to try, comma-separated; the best result per transport is kept")
	flag.IntVar(&o.kamShmMB, "kamailio-shm", 512, "Kamailio's shared memory in MB (-m): the stateful proxy of scenario b2bua keeps every transaction there for its wait timer")
	flag.StringVar(&servers, "servers", "kamailio,edged", "servers to measure, in order")
	flag.StringVar(&transports, "transports", "udp,tcp", "SIP transports to measure")
	flag.StringVar(&scenarios, "scenarios", scenarioSingle+","+scenarioMix, "scenarios to measure, in order: single (one call repeated) and mix (distinct calls for a directory)")
	flag.IntVar(&o.mailboxes, "mailboxes", sipptest.MixMailboxes, "directory size of the mix")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the mix")
	flag.IntVar(&o.start, "start", 1000, "first rate, calls/s")
	flag.IntVar(&o.step, "step", 0, "linear ramp: add this many calls/s per step and stop at the first failure; 0 doubles, then bisects")
	flag.IntVar(&o.max, "max", 100000, "highest rate tried, calls/s")
	flag.IntVar(&o.maxSteps, "steps", 9, "measurements per server and transport at most (about 13 s each with the default -duration)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one step")
	flag.DurationVar(&o.recvTimeout, "recv-timeout", 5*time.Second, "a call without its 302 after this long fails")
	flag.Float64Var(&o.loss, "loss", 0.001, "largest failed-call fraction a passing step may have")
	flag.StringVar(&o.sippCPU, "sipp-cpu", "0", "CPU list the load generator (SIPp or the Go UAC) is pinned to (taskset -c); empty = unpinned")
	flag.StringVar(&o.generator, "generator", generatorGo, "load generator: sipp, or go (sipload, built into sipbench: sendmmsg/recvmmsg, one pre-rendered INVITE per call; in b2bua also the callees)")
	flag.IntVar(&o.genConns, "generator-conns", 1, "go generator: TCP connections the calls are spread over (1 = one gateway)")
	flag.DurationVar(&o.genTick, "generator-tick", 0, "go generator: how often it sends what is due and drains the answers; 0 = 1ms")
	flag.StringVar(&o.serverCPU, "server-cpu", "1", "CPU list the server is pinned to (taskset -c); empty = unpinned")
	flag.IntVar(&o.maxCalls, "max-calls-allowed", 0, "max_calls_allowed of edged's back end; 0 = unlimited")
	flag.StringVar(&o.out, "out", "", "markdown file to append the results to")
	flag.DurationVar(&o.hold, "hold", 500*time.Millisecond, "b2bua: how long an answered call stays up before the caller's BYE (edged's media ports hold 3,500 calls at once)")
	flag.StringVar(&backendTransports, "backend-transports", "udp", "b2bua: SIP transports from the server to the callees to measure, udp and tcp, comma-separated")
	flag.BoolVar(&o.noCDR, "no-cdr", false, "b2bua: run edged without CDRs ([sbc] cdr_file unset)")
	flag.IntVar(&o.activeCalls, "active-calls", 2000, "b2bua: calls held at once to measure the memory per active call; 0 skips it")
	flag.DurationVar(&o.activeHold, "active-hold", 20*time.Second, "b2bua: hold time of the memory measurement's calls (below edged's media inactivity_timeout of 60s)")
	flag.Parse()
	for _, p := range []*string{&o.edged, &o.edgedBase, &o.plugins, &o.config} {
		// The servers run in a temporary directory.
		if abs, err := filepath.Abs(*p); err == nil && *p != "" {
			*p = abs
		}
	}
	o.servers = splitList(servers)
	o.transports = splitList(transports)
	o.scenarios = splitList(scenarios)
	o.backendTransports = splitList(backendTransports)
	var err error
	if o.kamChildren, err = parseInts(children); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, os.Stdout, os.Stderr)
	stop()
	stopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		os.Exit(1)
	}
}

// The scenarios.
const (
	scenarioSingle = "single"
	scenarioMix    = "mix"
	scenarioB2BUA  = "b2bua"
)

// result is the outcome for one server in one scenario on one transport.
type result struct {
	scenario, transport, server string
	steps                       []step
	best                        int          // index into steps, -1 = none passed
	active                      *activeCalls // b2bua: memory per active call; nil = not measured
}

// better reports whether a beats b: a passing step beats none, a higher
// achieved rate beats a lower one, and anything beats an empty result.
func better(a, b result) bool {
	as, aok := a.bestStep()
	bs, bok := b.bestStep()
	switch {
	case b.steps == nil:
		return true
	case aok && bok:
		return as.Achieved() > bs.Achieved()
	default:
		return aok
	}
}

func (r result) bestStep() (step, bool) {
	if r.best < 0 || r.best >= len(r.steps) {
		return step{}, false
	}
	return r.steps[r.best], true
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if err := sipptest.Available(); err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	env, err := describeEnv(o)
	if err != nil {
		return err
	}
	for _, line := range env {
		logf("%s", line)
	}

	candidates := map[string][]server{}
	for _, name := range o.servers {
		switch name {
		case "kamailio":
			mods, err := findKamailioModules()
			if err != nil {
				return err
			}
			for _, n := range o.kamChildren {
				candidates[name] = append(candidates[name], kamailioServer{bin: o.kamailio, kamcmd: o.kamcmd, shmMB: o.kamShmMB, cfg: kamailioConfig{
					Children: n, TCPChildren: n, UDPBuffer: udpBuffer, ModuleDir: mods,
				}})
			}
		case serverKamailioRTPEngine:
			mods, err := findKamailioModules()
			if err != nil {
				return err
			}
			if _, err := exec.LookPath(o.rtpengine); err != nil {
				return fmt.Errorf("%s needs rtpengine (Debian rtpengine-daemon): %w", name, err)
			}
			for _, n := range o.kamChildren {
				candidates[name] = append(candidates[name], kamailioServer{bin: o.kamailio, kamcmd: o.kamcmd, shmMB: o.kamShmMB, rtpengine: o.rtpengine,
					cfg: kamailioConfig{Children: n, TCPChildren: n, UDPBuffer: udpBuffer, ModuleDir: mods}})
			}
		case "edged", serverEdgedBase:
			bin := o.edged
			if name == serverEdgedBase {
				if bin = o.edgedBase; bin == "" {
					return fmt.Errorf("%w: -servers %s needs -edged-base", errBadFlag, name)
				}
			}
			for _, f := range []string{bin, filepath.Clean(o.plugins) + ".sha256", o.config} {
				if _, err := os.Stat(f); err != nil {
					return fmt.Errorf("%s needs %s (make build plugins): %w", name, f, err)
				}
			}
			candidates[name] = []server{edgedServer{label: name, bin: bin, plugins: o.plugins, template: o.config, maxCalls: o.maxCalls, noCDR: o.noCDR}}
		default:
			return fmt.Errorf("%w: -servers: unknown server %q", errBadFlag, name)
		}
	}

	var results []result
	for _, sc := range o.scenarios {
		for _, tp := range o.transports {
			for _, ob := range o.perBackend(sc) {
				for _, name := range o.servers {
					r, err := measureServer(ctx, ob, name, candidates[name], sc, tp, logf)
					if err != nil {
						return err
					}
					results = append(results, r)
				}
			}
		}
	}

	table := renderTable(results) + renderActive(results)
	fmt.Fprint(stdout, table)
	if o.out != "" {
		if err := appendReport(o.out, env, table); err != nil {
			return err
		}
	}
	return nil
}

// measureServer ramps each candidate configuration of server name in
// scenario sc over transport tp and keeps the best; in scenario b2bua it
// then measures the best one's memory per active call.
func measureServer(ctx context.Context, o options, name string, candidates []server, sc, tp string, logf func(string, ...any)) (result, error) {
	chosen, chosenSrv := result{best: -1}, server(nil)
	for _, srv := range candidates {
		label := name
		if k, ok := srv.(kamailioServer); ok && len(o.kamChildren) > 1 {
			label = fmt.Sprintf("kamailio children=%d", k.cfg.Children)
		}
		transport := tp
		if sc == scenarioB2BUA {
			transport = tp + "→" + o.backendTransport
		}
		logf("%s, %s over %s:", sc, label, strings.ToUpper(transport))
		steps, best, err := ramp(ctx, o.rampConfig(), func(ctx context.Context, rate int) (step, error) {
			return measure(ctx, o, srv, sc, tp, rate)
		}, logf)
		if err != nil {
			return result{}, fmt.Errorf("%s, %s over %s: %w", sc, label, transport, err)
		}
		r := result{scenario: sc, transport: transport, server: label, steps: steps, best: best}
		if b, ok := r.bestStep(); ok {
			logf("  best: %.0f calls/s (%s)", b.Achieved(), b.Mem)
		}
		if better(r, chosen) {
			chosen, chosenSrv = r, srv
		}
	}
	if sc != scenarioB2BUA || o.activeCalls == 0 || chosenSrv == nil {
		return chosen, nil
	}
	logf("%s, %s over %s: %d calls placed per %v hold:", sc, chosen.server, strings.ToUpper(chosen.transport), o.activeCalls, o.activeHold)
	a, err := measureActive(ctx, o, chosenSrv, tp)
	if err != nil {
		return result{}, fmt.Errorf("%s, %s over %s, active calls: %w", sc, chosen.server, chosen.transport, err)
	}
	logf("  %s", a)
	chosen.active = &a
	return chosen, nil
}

// perBackend returns o once per back-end transport for scenario b2bua,
// and o itself for the others.
func (o options) perBackend(sc string) []options {
	if sc != scenarioB2BUA {
		return []options{o}
	}
	var out []options
	for _, bt := range o.backendTransports {
		ob := o
		ob.backendTransport = bt
		out = append(out, ob)
	}
	return out
}

// udpBuffer is the UDP socket buffer both servers may use: edged's
// sip.udp_buffer_bytes default and Kamailio's maxbuffer (the kernel caps
// both at net.core.rmem_max/wmem_max).
const udpBuffer = 8 << 20

func (o options) rampConfig() rampConfig {
	return rampConfig{Start: o.start, Max: o.max, Step: o.step, MaxSteps: o.maxSteps, Grain: 100}
}

func (o options) validate() error {
	var bad []string
	if o.start <= 0 || o.max < o.start {
		bad = append(bad, fmt.Sprintf("-start %d and -max %d", o.start, o.max))
	}
	if o.step < 0 || o.maxSteps < 1 {
		bad = append(bad, fmt.Sprintf("-step %d, -steps %d", o.step, o.maxSteps))
	}
	if o.duration < time.Second {
		bad = append(bad, fmt.Sprintf("-duration %v below 1s", o.duration))
	}
	if o.generator != "" && o.generator != generatorSIPp && o.generator != generatorGo {
		bad = append(bad, fmt.Sprintf("-generator %q is not %s or %s", o.generator, generatorSIPp, generatorGo))
	}
	if o.genConns < 0 || o.genConns > 1024 {
		bad = append(bad, fmt.Sprintf("-generator-conns %d not in 1..1024", o.genConns))
	}
	if o.loss <= 0 || o.loss >= 1 {
		bad = append(bad, fmt.Sprintf("-loss %v not in (0,1)", o.loss))
	}
	if len(o.servers) == 0 || len(o.transports) == 0 || len(o.scenarios) == 0 || len(o.kamChildren) == 0 {
		bad = append(bad, "empty -servers, -transports, -scenarios or -kamailio-children")
	}
	for _, sc := range o.scenarios {
		if sc != scenarioSingle && sc != scenarioMix && sc != scenarioB2BUA {
			bad = append(bad, fmt.Sprintf("-scenarios: %q is not %s, %s or %s", sc, scenarioSingle, scenarioMix, scenarioB2BUA))
		}
	}
	if slices.Contains(o.scenarios, scenarioB2BUA) {
		bad = append(bad, o.validateB2BUA()...)
	}
	if (slices.Contains(o.scenarios, scenarioMix) || slices.Contains(o.scenarios, scenarioB2BUA)) && (o.mailboxes < 1 || o.mailboxes > sipptest.MixMaxMailboxes) {
		bad = append(bad, fmt.Sprintf("-mailboxes %d not in 1..%d", o.mailboxes, sipptest.MixMaxMailboxes))
	}
	for _, tp := range o.transports {
		if tp != "udp" && tp != "tcp" {
			bad = append(bad, fmt.Sprintf("-transports: %q is not udp or tcp", tp))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", errBadFlag, strings.Join(bad, "; "))
	}
	return nil
}

// usesGo reports whether the Go generator places scenario's calls (and
// in scenario b2bua answers them).
func (o options) usesGo(string) bool { return o.generator == generatorGo }

// measure runs one step of scenario: a fresh server, the load generator at rate for
// o.duration, the server's memory, then the server stopped. For the mix the
// step writes a mix with one line per call, so that no caller repeats.
func measure(ctx context.Context, o options, srv server, scenario, transport string, rate int) (step, error) {
	calls := int(float64(rate) * o.duration.Seconds())
	st, err := prepare(o, srv, scenario, transport, rate, calls, o.hold)
	if err != nil {
		return step{}, err
	}
	defer st.close()

	cpu0, _ := treeCPU("/proc", st.p.cmd.Process.Pid)
	s := step{Rate: rate, Planned: calls, Hold: st.run.Hold}
	err = st.place(ctx, o, scenario, &s)
	if ctx.Err() != nil {
		return step{}, ctx.Err()
	}
	if cpu1, cerr := treeCPU("/proc", st.p.cmd.Process.Pid); cerr == nil {
		s.ServerCPU = cpu1 - cpu0
	}
	if m, merr := treeMemory("/proc", st.p.cmd.Process.Pid); merr == nil {
		s.Mem = m
	}
	var calleeErr error
	if st.callees != nil {
		calleeErr = st.callees.stop(&s, o.recvTimeout)
	}
	s.judge(o.loss)
	switch {
	case !st.p.alive():
		s.Pass, s.Why = false, fmt.Sprintf("%s exited: %v: %s", st.p.name, st.p.err, st.p.logTail())
	case err != nil:
		s.Pass, s.Why = false, fmt.Sprintf("%s: %v", s.generator(), err)
	case calleeErr != nil:
		s.Pass, s.Why = false, calleeErr.Error()
	}
	if !s.Pass {
		if tail := lastLogLine(st.p.logTail()); tail != "" {
			s.Why += "; server log: " + tail
		}
	}
	return s, nil
}

// stage is a step ready to run: the server started for the scenario, the
// callees of scenario b2bua listening, and the SIPp caller set up.
type stage struct {
	dir     string
	p       *proc
	run     sipptest.Run
	callees *callees // scenario b2bua only
}

// prepare starts a stage for calls calls at rate; the calls of scenario
// b2bua are held for hold.
func prepare(o options, srv server, scenario, transport string, rate, calls int, hold time.Duration) (_ *stage, err error) {
	dir, err := os.MkdirTemp("", "sipbench-")
	if err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	st := &stage{dir: dir}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	run := sipptest.Run{
		Scenario:       sipptest.UAC302,
		Service:        "1001",
		FromUser:       "4000",
		ContactPattern: `^<sip:1001@127\.0\.0\.1:5062;transport=tcp>`,
	}
	var w workload
	if scenario == scenarioMix || scenario == scenarioB2BUA {
		if w.mix, err = sipptest.WriteMix(dir, sipptest.Mix{Seed: o.seed, Mailboxes: o.mailboxes, Calls: calls}); err != nil {
			return nil, fmt.Errorf("write the mix: %w", err)
		}
		run = sipptest.Run{Scenario: sipptest.UACMix, Inject: w.mix.CSV}
	}
	concurrent := rate * 2
	if scenario == scenarioB2BUA {
		// The callees listen before the server starts; a port taken by
		// another program meanwhile gets a new port, as for sippBindFailed.
		for try := 0; ; try++ {
			if w.backend, err = newBackend(o.backendTransport); err != nil {
				return nil, err
			}
			if st.callees, err = startCallees(o, w, hold); err == nil || try == 2 {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		run = sipptest.Run{Scenario: sipptest.UACCallMix, Inject: w.mix.CSV, Hold: hold}
		concurrent = int(float64(rate) * (hold.Seconds() + 2))
	}
	if st.p, err = startServer(srv, o.serverCPU, dir, port, w); err != nil {
		return nil, err
	}

	run.Target = fmt.Sprintf("127.0.0.1:%d", port)
	run.Transport = transport
	run.Calls = calls
	run.Rate = float64(rate)
	run.RatePeriod = time.Second
	run.MaxConcurrent = max(concurrent, 100)
	run.CPU = o.sippCPU
	run.RecvTimeout = o.recvTimeout
	run.Timeout = 3*(time.Duration(calls)*time.Second/time.Duration(rate)) + hold + o.recvTimeout + 30*time.Second
	run.ExtraArgs = []string{
		"-buff_size", strconv.Itoa(udpBuffer),
		"-max_recv_loops", "100000",
		"-max_sched_loops", "100000",
	}
	st.run = run
	return st, nil
}

// place runs the step's caller, the Go UAC or SIPp as o says, and fills
// s from what it did.
func (st *stage) place(ctx context.Context, o options, scenario string, s *step) error {
	if o.usesGo(scenario) {
		res, err := st.execGo(ctx, o.genConns, o.genTick)
		if res != nil {
			s.fromUAC(res)
		}
		return err
	}
	res, err := st.exec(ctx)
	if res != nil {
		s.Created, s.Successful, s.Failed = res.Created, res.Successful, res.Failed
		s.Retrans, s.Elapsed, s.LoadCPU = res.Retransmissions, res.Elapsed, res.CPU
		s.Codes, s.Failures = res.Codes, failures(res)
	}
	return err
}

// exec runs the SIPp caller, again when it could not bind its ports.
func (st *stage) exec(ctx context.Context) (*sipptest.Result, error) {
	res, err := st.run.Exec(ctx, nil)
	for retry := 0; retry < 2 && sippBindFailed(res) && ctx.Err() == nil; retry++ {
		res, err = st.run.Exec(ctx, nil)
	}
	return res, err
}

// close stops the callees and the server and removes the work files.
func (st *stage) close() {
	if st.callees != nil {
		st.callees.kill()
	}
	if st.p != nil {
		st.p.stop()
	}
	os.RemoveAll(st.dir)
}

// lastLogLine returns the last line of a server's log tail, shortened.
func lastLogLine(tail string) string {
	if i := strings.LastIndexByte(tail, '\n'); i >= 0 {
		tail = tail[i+1:]
	}
	if len(tail) > 300 {
		tail = tail[:300] + "…"
	}
	return tail
}

// sippExitBindError is SIPp's exit status when it cannot bind a port
// (EXIT_BIND_ERROR).
const sippExitBindError = 254

// sippBindFailed reports whether SIPp ended before its first call because a
// port it was given was taken meanwhile (sipptest picks free ports, and
// another program may bind one before SIPp does): a failure of the run,
// not of the server, so measure runs SIPp again.
func sippBindFailed(res *sipptest.Result) bool {
	return res != nil && res.Created == 0 && res.ExitCode == sippExitBindError
}

// describeEnv returns the lines that say what was measured where.
func describeEnv(o options) ([]string, error) {
	sippV, _ := exec.Command(sipptest.Binary, "-v").CombinedOutput()
	sippLine := "unknown"
	for _, l := range strings.Split(string(sippV), "\n") {
		if strings.Contains(l, "SIPp v") {
			sippLine = strings.TrimSpace(l)
		}
	}
	env := []string{
		"date: " + time.Now().UTC().Format(time.RFC3339),
		fmt.Sprintf("machine: %s, %d CPUs, %s/%s", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH),
		"sipp: " + sippLine,
		fmt.Sprintf("pinning: load generator on CPU %q, server on CPU %q (taskset -c)", o.sippCPU, o.serverCPU),
		"generator: " + o.describeGenerator(),
		fmt.Sprintf("steps: %v each, start %d/s, max %d/s, pass = under %.2f%% failed calls and the rate held within 5%%",
			o.duration, o.start, o.max, 100*o.loss),
		"command: " + strings.Join(os.Args, " "),
	}
	if slices.Contains(o.scenarios, scenarioMix) || slices.Contains(o.scenarios, scenarioB2BUA) {
		env = append(env, fmt.Sprintf("mix: seed %d, %d mailboxes (%d-digit TelExtn extensions, pilot %s), a distinct caller on every call; "+
			"per 100 calls 80 diverted (60 to the pilot, 20 to the mailbox), 10 direct (7 mailbox, 3 pilot) → 302, "+
			"9 unknown numbers and 1 non-numeric caller → 404",
			o.seed, o.mailboxes, sipptest.MixDigits, sipptest.MixPilot))
	}
	if slices.Contains(o.scenarios, scenarioB2BUA) {
		env = append(env, b2buaEnv(o)...)
	}
	for _, s := range o.servers {
		if s == "kamailio" {
			v, err := kamailioVersion(o.kamailio)
			if err != nil {
				return nil, err
			}
			env = append(env, fmt.Sprintf("kamailio: %s, children=tcp_children in %v, maxbuffer=%d, shared memory %d MB; single and mix: sl_send_reply 302 with append_to_reply Contact (mix: directory in an htable from db_text)",
				v, o.kamChildren, udpBuffer, o.kamShmMB))
		}
	}
	return env, nil
}

// describeGenerator says who places the calls.
func (o options) describeGenerator() string {
	if o.generator != generatorGo {
		return "sipp for every scenario"
	}
	d := fmt.Sprintf("go (core/internal/sipload: open-loop at the rate, UDP Timer A from T1 500 ms and Timer B at -recv-timeout, TCP over %d connection(s), sendmmsg/recvmmsg batches of %d)",
		o.genConns, sipload.DefaultBatch)
	if slices.Contains(o.scenarios, scenarioB2BUA) {
		d += "; b2bua: full calls from sipload's UAC over UDP (ACK along the route set, BYE with Timers E/F at -recv-timeout) to one process of sipload UASes on the back-end hosts " +
			"(200 at once, resent over UDP until the ACK), pinned with the caller; generator CPU = caller + callees"
	}
	return d
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, strings.ToLower(f))
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: %q is not a positive number", errBadFlag, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// failures returns SIPp's failed-call counters of res that are not zero.
func failures(res *sipptest.Result) map[string]int {
	m := map[string]int{}
	for k, v := range res.Counters {
		if strings.HasPrefix(k, "Failed") && k != "FailedCall" && v > 0 {
			m[k] = v
		}
	}
	return m
}
