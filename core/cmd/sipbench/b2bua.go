package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// Scenario b2bua: the calls of the mix as full calls through a proxy.
//
// The caller (sipload's UAC with Config.FullCalls, or SIPp's
// sipptest.UACCallMix with -generator sipp) places one call per mix line
// over UDP. A line the Call Router would redirect to a mailbox is routed
// to the mailbox's back end (127.0.0.1 or 127.0.0.2, by the directory),
// where a callee (sipload.UAS in one process for both hosts, or a SIPp
// sipptest.UASAnswer per host) answers with SDP; the caller ACKs, holds
// the call for -hold and hangs up with BYE. The other lines get their 404
// from the server. No RTP flows. edged runs every pool as a proxy pool, so
// each answered call is a B2BUA call with both legs' media anchored (a
// media session and two RTP/RTCP port pairs, although no packet comes);
// Kamailio is a stateful tm + rr proxy that record-routes and relays the
// call and keeps no state beyond its transactions. Each callee must take
// exactly the calls of its host and end each with its BYE: a call at the
// wrong back end fails, and so does one no callee ended.

// callees are the back ends of one step, one per back-end host: SIPp
// processes, or one process of Go callees (sipload.UAS) for all hosts.
type callees struct {
	procs []*sipptest.UASProc
	gop   *goCallees
	hosts []string
	want  []int // calls each host must take
	// others are the mix's calls that reach no callee (the lines the Call
	// Router answers itself): the caller alone judges them.
	others int
}

// newBackend picks a port free for UDP and TCP on both back-end hosts.
func newBackend(transport string) (*backend, error) {
	hosts := backendHosts()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			return nil, fmt.Errorf("find a back-end port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if portFree(hosts, port) {
			return &backend{port: port, transport: transport}, nil
		}
	}
	return nil, errors.New("find a back-end port: none free on " + strings.Join(hosts, " and "))
}

// backendHosts are the hosts of the mix's pools: one SIPp callee each.
func backendHosts() []string { return []string{"127.0.0.1", "127.0.0.2"} }

func portFree(hosts []string, port int) bool {
	for _, h := range hosts {
		addr := net.JoinHostPort(h, fmt.Sprint(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}

// wantPerHost counts the mix's calls that reach each back-end host: the
// lines the Call Router answers with 302, by the Contact's host.
func wantPerHost(mix *sipptest.MixFiles, hosts []string) ([]int, error) {
	want := make([]int, len(hosts))
	for i, c := range mix.Calls {
		if c.Code != 302 {
			continue
		}
		_, hostPort, _ := strings.Cut(c.Contact, "@")
		host, _, err := net.SplitHostPort(hostPort)
		j := slices.Index(hosts, host)
		if err != nil || j < 0 {
			return nil, fmt.Errorf("%w: line %d: contact %q is none of the back ends %v", errBadMix, i+1, c.Contact, hosts)
		}
		want[j]++
	}
	return want, nil
}

// startCallees starts one SIPp callee per back-end host on w's port, each
// told how many calls to take, and gives them a moment to bind.
func startCallees(o options, w workload, hold time.Duration) (*callees, error) {
	c := &callees{hosts: backendHosts()}
	var err error
	if c.want, err = wantPerHost(w.mix, c.hosts); err != nil {
		return nil, err
	}
	c.others = len(w.mix.Calls)
	for _, n := range c.want {
		c.others -= n
	}
	if o.usesGo(scenarioB2BUA) {
		addrs := make([]string, len(c.hosts))
		for i, h := range c.hosts {
			addrs[i] = net.JoinHostPort(h, fmt.Sprint(w.backend.port))
		}
		if c.gop, err = startGoCallees(addrs, o.sippCPU); err != nil {
			return nil, err
		}
		return c, nil
	}
	for i, h := range c.hosts {
		p, err := sipptest.UAS{
			Addr:        net.JoinHostPort(h, fmt.Sprint(w.backend.port)),
			Transport:   w.backend.transport,
			Calls:       c.want[i],
			RecvTimeout: hold + o.recvTimeout,
			CPU:         o.sippCPU,
			ExtraArgs:   []string{"-buff_size", fmt.Sprint(udpBuffer), "-max_recv_loops", "100000", "-max_sched_loops", "100000"},
		}.Start()
		if err != nil {
			c.kill()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	time.Sleep(500 * time.Millisecond)
	for i, p := range c.procs {
		if p.Exited() {
			res, _ := p.Stop(0)
			c.procs = slices.Delete(c.procs, i, i+1)
			c.kill()
			out := ""
			if res != nil {
				out = strings.TrimSpace(res.Stdout)
			}
			return nil, fmt.Errorf("%w: the callee on %s:%d ended at startup: %s", errExited, c.hosts[i], w.backend.port, out)
		}
	}
	return c, nil
}

// current returns the calls the callees have up, as of their last
// statistics dump.
func (c *callees) current() (int, error) {
	n := 0
	if c.gop != nil {
		r, err := c.gop.report()
		for _, h := range r.Hosts {
			n += h.Current
		}
		return n, err
	}
	for i, p := range c.procs {
		r, err := p.Stats()
		if err != nil {
			return 0, fmt.Errorf("callee %s: %w", c.hosts[i], err)
		}
		n += r.Current
	}
	return n, nil
}

// stop waits up to wait for the callees to take their calls and end, and
// records in s what they took and the CPU they used (added to the
// caller's in s.LoadCPU: they share its CPU): a host that took more calls than the mix
// sends it got calls meant for another, and each such call is taken off
// s.Successful; so is each call a host was meant to take and did not end
// (never reached it, or its BYE did not), whatever the caller saw: a
// server that answers the INVITE or the BYE itself does not pass.
func (c *callees) stop(s *step, wait time.Duration) error {
	if c.gop != nil {
		return c.stopGo(s, wait)
	}
	var errs []error
	done := make([]int, len(c.procs))
	for i, p := range c.procs {
		r, err := p.Stop(wait)
		if err != nil {
			errs = append(errs, fmt.Errorf("callee %s: %w", c.hosts[i], err))
			continue
		}
		s.Answered += r.Successful
		s.LoadCPU += r.CPU
		s.Misrouted += max(0, r.Created-c.want[i])
		done[i] = r.Successful
	}
	c.procs = nil
	c.judge(s, done)
	return errors.Join(errs...)
}

// stopGo is stop for the Go callees: a call a host took beyond its share
// is misrouted, and what went wrong at the callees is noted in the step.
func (c *callees) stopGo(s *step, wait time.Duration) error {
	r, cpu, err := c.gop.stop(c.want, wait)
	c.gop = nil
	s.LoadCPU += cpu
	s.CalleeCPU = cpu
	var failed, noAck, unexpected, sockErrs int
	done := make([]int, len(c.want))
	for i, h := range r.Hosts {
		if i < len(done) {
			done[i] = h.Ended
		}
		s.Answered += h.Ended
		s.Misrouted += max(0, h.Calls-c.want[i])
		failed, noAck, unexpected, sockErrs = failed+h.Failed+h.Current, noAck+h.NoAck, unexpected+h.Unexpected, sockErrs+h.TransportErrors
		if h.FirstError != "" {
			s.note("callee " + c.hosts[i] + ": " + h.FirstError)
		}
	}
	if failed+noAck+unexpected+sockErrs > 0 {
		s.note(fmt.Sprintf("callees: %d calls without ACK or BYE, %d BYEs before the ACK, %d unexpected messages, %d socket errors",
			failed, noAck, unexpected, sockErrs))
	}
	c.judge(s, done)
	return err
}

// judge takes off s.Successful the misrouted calls, and bounds it by
// what the callees completed: done[i] calls ended by a BYE at host i,
// of which at most its share of the mix counts, and the mix's calls that
// reach no callee.
func (c *callees) judge(s *step, done []int) {
	reached := c.others
	for i, w := range c.want {
		if i < len(done) {
			reached += min(done[i], w)
		}
	}
	s.Successful = max(0, min(s.Successful-s.Misrouted, reached))
}

// kill ends callees that are still running.
func (c *callees) kill() {
	if c.gop != nil {
		_, _, _ = c.gop.stop(nil, 0)
		c.gop = nil
	}
	for _, p := range c.procs {
		_, _ = p.Stop(0)
	}
	c.procs = nil
}

// validateB2BUA checks the flags of scenario b2bua.
func (o options) validateB2BUA() []string {
	var bad []string
	if len(o.backendTransports) == 0 {
		bad = append(bad, "empty -backend-transports")
	}
	for _, bt := range o.backendTransports {
		if bt != "udp" && bt != "tcp" {
			bad = append(bad, fmt.Sprintf("-backend-transports: %q is not udp or tcp", bt))
		}
	}
	if o.hold < 0 || o.hold > time.Minute {
		bad = append(bad, fmt.Sprintf("-hold %v not in 0..1m", o.hold))
	}
	if o.activeCalls < 0 {
		bad = append(bad, fmt.Sprintf("-active-calls %d below 0", o.activeCalls))
	}
	if o.activeCalls > 0 && (o.activeHold < minActiveHold || o.activeHold >= 60*time.Second) {
		bad = append(bad, fmt.Sprintf("-active-hold %v not in %v..60s (the calls are placed in a quarter of it and read %v after, while none has ended; edged ends calls without media after 60s)",
			o.activeHold, minActiveHold, txnLinger))
	}
	return bad
}

// activeCalls is the memory measurement of scenario b2bua: many calls held
// at once, the server's memory then against its memory before the calls.
type activeCalls struct {
	Rate      int           // calls/s placed
	Hold      time.Duration // hold time of each call
	Up        int           // calls the callees had up when the memory was read
	UpEnd     int           // calls they had up at the end of the plateau's sampling
	IdleKiB   int64         // PSS of the server's process tree before the first call
	ActiveKiB int64         // PSS with Up calls up
	// Self is the server's own accounting (edged's live heap, Kamailio's
	// shared memory); nil when the server has none.
	Self *selfFigure
	// SetupBytes is an exact probe's reading 1 s after the last call was
	// placed, while their INVITE transactions are kept; 0 when not read.
	SetupBytes int64
	// KernelSockets is the media sockets each call keeps open in the
	// kernel (edged: two legs of an RTP/RTCP pair), outside Self and PSS.
	KernelSockets int
	Step          step // the whole run, judged like a step
}

// kernelSocketKiB is the kernel memory of one bound UDP socket in an
// epoll set, measured as slab growth (core/internal/media, pairpool.go:
// 2,777–2,881 B).
const kernelSocketKiB = 2.8

// PerCallKiB is the memory one active call costs by the PSS.
func (a activeCalls) PerCallKiB() float64 {
	if a.Up == 0 {
		return math.NaN()
	}
	return float64(a.ActiveKiB-a.IdleKiB) / float64(a.Up)
}

// SelfPerCallKiB is the memory one active call costs by the server's own
// accounting (NaN when there is none).
func (a activeCalls) SelfPerCallKiB() float64 {
	if a.Self == nil {
		return math.NaN()
	}
	return perCallKiB(a.Self.Idle, a.Self.Active, a.Up)
}

// PkgPerCallKiB is Kamailio's pkg memory growth per active call (NaN
// when unknown).
func (a activeCalls) PkgPerCallKiB() float64 {
	if a.Self == nil {
		return math.NaN()
	}
	return perCallKiB(a.Self.PkgIdle, a.Self.PkgActive, a.Up)
}

func (a activeCalls) String() string {
	s := fmt.Sprintf("%d calls up (%d at the plateau's end; placed at %d/s, held %v): PSS %.1f MiB idle, %.1f MiB with the calls, %.1f KiB per active call",
		a.Up, a.UpEnd, a.Rate, a.Hold, mib(a.IdleKiB), mib(a.ActiveKiB), a.PerCallKiB())
	if f := a.Self; f != nil {
		s += fmt.Sprintf("; %s %.2f MiB idle (median of %d, span %.0f KiB), %.2f MiB with the calls (median of %d, span %.0f KiB), %.2f KiB per active call",
			f.Kind, mib(f.Idle/1024), f.IdleN, float64(f.IdleSpan)/1024, mib(f.Active/1024), f.ActiveN, float64(f.ActiveSpan)/1024, a.SelfPerCallKiB())
		if a.SetupBytes > 0 {
			s += fmt.Sprintf(" (%.2f MiB 1 s after the last call was placed, %.2f KiB per call placed: what their setup kept for a while)",
				mib(a.SetupBytes/1024), float64(a.SetupBytes-f.Idle)/1024/float64(max(1, a.Step.Planned)))
		}
		if f.PkgIdle >= 0 && f.PkgActive >= 0 {
			s += fmt.Sprintf("; pkg %.2f → %.2f MiB, %.2f KiB per active call", mib(f.PkgIdle/1024), mib(f.PkgActive/1024), a.PkgPerCallKiB())
		}
	}
	if a.KernelSockets > 0 {
		s += fmt.Sprintf("; plus in the kernel %d media sockets per call, ~%.1f KiB (%.1f KiB a socket, pairpool.go; not in the figures above)",
			a.KernelSockets, float64(a.KernelSockets)*kernelSocketKiB, kernelSocketKiB)
	}
	return s + "; run: " + a.Step.String()
}

// idleWindow is the sampling of a server's own memory (selfmem.go)
// before the first call.
var idleWindow = memWindow{want: 3, poll: 250 * time.Millisecond, window: 15 * time.Second}

// activePlan is the timing of the memory measurement: the calls placed
// in the first quarter of their hold time, then read while all are up
// and none has ended.
type activePlan struct {
	rate    int           // calls/s
	calls   int           // calls placed
	settle  time.Duration // from the first call to the plateau's first read
	plateau memWindow     // the sampling of the server's own memory on the plateau
}

// txnLinger is how long after the last call's answer the plateau starts:
// the INVITE transactions are gone by then (Kamailio's tm keeps each for
// its wait_timer, 5 s, after the final response; RFC 3261 Timer J does not
// apply to INVITE), so that what is read is what the calls up keep, not
// what their setup left for a while.
const txnLinger = 6 * time.Second

// minActiveHold is the shortest hold that leaves a plateau of 2 s.
const minActiveHold = 12 * time.Second

// planActive places calls calls held for hold: at calls/(hold/4) per
// second, the last placed after a quarter of the hold; the plateau starts
// txnLinger after that, with every answered call up, and its sampling
// ends 1 s before the first call's BYE. A probe whose reads are exact
// (Kamailio's) is read want times evenly over the window; edged's as its
// GC marks come (freshFilter).
func planActive(calls int, hold time.Duration) activePlan {
	place := hold / 4
	p := activePlan{rate: int(math.Ceil(float64(calls) / place.Seconds())), calls: calls, settle: place + txnLinger}
	window := hold - p.settle - time.Second
	p.plateau = memWindow{want: 5, poll: 250 * time.Millisecond, window: window, exactPoll: window / 5}
	return p
}

// measureActive places o.activeCalls calls, each held for o.activeHold
// (planActive), and reads the server's proportional set size (PSS, shared
// pages split among the processes that map them) before the first call
// and on the plateau, when every call is up and none has ended yet; a
// server with its own accounting (selfMemory) is also sampled before the
// calls and over the plateau.
func measureActive(ctx context.Context, o options, srv server, transport string) (activeCalls, error) {
	plan := planActive(o.activeCalls, o.activeHold)
	rate, calls := plan.rate, plan.calls
	a := activeCalls{Rate: rate, Hold: o.activeHold}
	if _, ok := srv.(edgedServer); ok {
		a.KernelSockets = 4 // RTP and RTCP of both legs
	}
	st, err := prepare(o, srv, scenarioB2BUA, transport, rate, calls, o.activeHold)
	if err != nil {
		return a, err
	}
	defer st.close()
	pid := st.p.cmd.Process.Pid
	time.Sleep(time.Second) // the server settles after its start
	if a.IdleKiB, err = treePss("/proc", pid); err != nil {
		return a, err
	}
	var probe *memProbe
	var idle []memSample
	if sm, ok := srv.(selfMemory); ok {
		if probe, err = sm.memProbe(st.dir, st.p.port); err != nil {
			return a, err
		}
		if idle, err = sampleMemory(ctx, probe, idleWindow); err != nil {
			return a, fmt.Errorf("%s at idle: %w", srv.name(), err)
		}
	}

	s := step{Rate: rate, Planned: calls, Hold: o.activeHold}
	done := make(chan error, 1)
	cpu0, _ := treeCPU("/proc", pid)
	start := time.Now()
	go func() { done <- st.place(ctx, o, scenarioB2BUA, &s) }()
	if probe != nil && probe.exact {
		// Right after the last call is placed: what the calls' setup
		// keeps for a while (Kamailio's INVITE transactions).
		select {
		case <-time.After(plan.settle - txnLinger + time.Second):
		case err := <-done:
			return a, fmt.Errorf("the caller ended before the calls were up: %w (%v)", err, s)
		}
		if sm, err := probe.read(); err == nil {
			a.SetupBytes = sm.Bytes
		}
	}
	select {
	case <-time.After(time.Until(start.Add(plan.settle))):
	case err := <-done:
		return a, fmt.Errorf("the caller ended before the calls were up: %w (%v)", err, s)
	}
	if a.Up, err = st.callees.current(); err != nil {
		return a, err
	}
	if a.ActiveKiB, err = treePss("/proc", pid); err != nil {
		return a, err
	}
	if probe != nil {
		active, err := sampleMemory(ctx, probe, plan.plateau)
		if err != nil {
			return a, fmt.Errorf("%s on the plateau: %w", srv.name(), err)
		}
		f := newSelfFigure(probe.kind, idle, active)
		a.Self = &f
		if a.UpEnd, err = st.callees.current(); err != nil {
			return a, err
		}
	}
	placeErr := <-done
	if ctx.Err() != nil {
		return a, ctx.Err()
	}
	if cpu1, err := treeCPU("/proc", pid); err == nil {
		s.ServerCPU = cpu1 - cpu0
	}
	if m, err := treeMemory("/proc", pid); err == nil {
		s.Mem = m
	}
	calleeErr := st.callees.stop(&s, o.recvTimeout)
	s.judge(o.loss)
	switch {
	case placeErr != nil:
		s.Pass, s.Why = false, fmt.Sprintf("%s: %v", s.generator(), placeErr)
	case calleeErr != nil:
		s.Pass, s.Why = false, calleeErr.Error()
	}
	a.Step = s
	return a, nil
}

// renderActive returns the memory measurements of scenario b2bua as a
// markdown table, or "" when there are none.
func renderActive(results []result) string {
	var b strings.Builder
	for _, r := range results {
		if r.active == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n| scenario | transport | server | calls up | idle PSS MiB | PSS with the calls MiB | PSS KiB per active call " +
				"| own figure | idle MiB | with the calls MiB | heap or shm KiB per active call | pkg KiB per active call | kernel KiB per active call | failed % |\n")
			b.WriteString("|---|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|\n")
		}
		a := r.active
		kind, idle, active := "–", "–", "–"
		if f := a.Self; f != nil {
			kind, idle, active = f.Kind, fmt.Sprintf("%.2f", mib(f.Idle/1024)), fmt.Sprintf("%.2f", mib(f.Active/1024))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %.3f |\n", r.scenario, strings.ToUpper(r.transport), r.server,
			a.Up, mib(a.IdleKiB), mib(a.ActiveKiB), a.PerCallKiB(), kind, idle, active,
			orDash(a.SelfPerCallKiB()), orDash(a.PkgPerCallKiB()), orDash(a.KernelPerCallKiB()), 100*a.Step.FailedFraction())
	}
	return b.String()
}

// KernelPerCallKiB is the kernel memory of a call's media sockets (NaN
// for a server without them counted).
func (a activeCalls) KernelPerCallKiB() float64 {
	if a.KernelSockets == 0 {
		return math.NaN()
	}
	return float64(a.KernelSockets) * kernelSocketKiB
}

// orDash prints v with two decimals, or "–" for NaN (not measured).
func orDash(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// b2buaEnv says how scenario b2bua was run.
func b2buaEnv(o options) []string {
	cdr := "CDRs on"
	if o.noCDR {
		cdr = "CDRs off"
	}
	lines := []string{
		fmt.Sprintf("b2bua: the mix's calls as full calls from the generator to the server and over %s to the generator's callees on 127.0.0.1 and 127.0.0.2 "+
			"(the mailbox's back end by the directory; each must take exactly its calls); 200 with SDP, ACK, %v hold, BYE, 200; the 404 lines end at the server; no RTP",
			strings.Join(strings.Split(strings.ToUpper(strings.Join(o.backendTransports, ",")), ","), " or "), o.hold),
		fmt.Sprintf("b2bua, edged: every pool a proxy pool (B2BUA; media anchored: a session with two RTP/RTCP port pairs per call, ports %d-%d, sbc.max_calls %d, media.idle_pairs %d), %s",
			b2buaMediaPortMin, b2buaMediaPortMax, b2buaMaxCalls, b2buaIdlePairs, cdr),
		"b2bua, kamailio: stateful proxy (tm + rr + maxfwd: record_route, t_relay to the mailbox's back end from the same htable, loose_route in dialog)",
	}
	if o.activeCalls > 0 {
		plan := planActive(o.activeCalls, o.activeHold)
		lines = append(lines, fmt.Sprintf("b2bua, memory per active call: %d calls placed at %d/s, held %v each, PSS of the server's process tree before the first call and on the plateau "+
			"(%v after the first call: all calls up, none ended, their INVITE transactions over), divided by the calls the callees had up",
			o.activeCalls, plan.rate, o.activeHold, plan.settle),
			fmt.Sprintf("b2bua, memory per active call by the server's own figure, divided the same: edged's live heap as of a GC mark (go_gc_heap_live_bytes), the median of up to %d marks at idle "+
				"and %d on the plateau (with OPTIONS sent meanwhile so that it collects; they keep nothing); Kamailio's shared memory in use (core.shmmem real_used, kamcmd) and pkg memory summed over its processes (pkg.stats), medians of as many reads; "+
				"edged's media sockets in the kernel (4 a call, %.1f KiB each) stated apart",
				idleWindow.want, plan.plateau.want, kernelSocketKiB))
	}
	return lines
}
