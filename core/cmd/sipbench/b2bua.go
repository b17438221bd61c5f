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
	if o.activeCalls > 0 && (o.activeHold < 5*time.Second || o.activeHold >= 60*time.Second) {
		bad = append(bad, fmt.Sprintf("-active-hold %v not in 5s..60s (edged ends calls without media after 60s)", o.activeHold))
	}
	return bad
}

// activeCalls is the memory measurement of scenario b2bua: many calls held
// at once, the server's memory then against its memory before the calls.
type activeCalls struct {
	Rate      int           // calls/s placed
	Hold      time.Duration // hold time of each call
	Up        int           // calls the callees had up when the memory was read
	IdleKiB   int64         // PSS of the server's process tree before the first call
	ActiveKiB int64         // PSS with Up calls up
	Step      step          // the whole run, judged like a step
}

// PerCallKiB is the memory one active call costs.
func (a activeCalls) PerCallKiB() float64 {
	if a.Up == 0 {
		return math.NaN()
	}
	return float64(a.ActiveKiB-a.IdleKiB) / float64(a.Up)
}

func (a activeCalls) String() string {
	return fmt.Sprintf("%d calls up (at %d/s held %v): PSS %.1f MiB idle, %.1f MiB with the calls, %.1f KiB per active call; run: %s",
		a.Up, a.Rate, a.Hold, mib(a.IdleKiB), mib(a.ActiveKiB), a.PerCallKiB(), a.Step)
}

// measureActive places o.activeCalls calls at o.activeCalls/o.activeHold
// per second, each held for o.activeHold, and reads the server's
// proportional set size (PSS, shared pages split among the processes that
// map them) before the first call and when the calls up reach their
// plateau (after one hold time, before the first BYE).
func measureActive(ctx context.Context, o options, srv server, transport string) (activeCalls, error) {
	rate := int(math.Ceil(float64(o.activeCalls) / o.activeHold.Seconds()))
	// The plateau lasts from one hold time after the first call to the
	// last call's start: three seconds of it are enough to read.
	run := o.activeHold + 6*time.Second
	calls := int(float64(rate) * run.Seconds())
	a := activeCalls{Rate: rate, Hold: o.activeHold}
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

	s := step{Rate: rate, Planned: calls, Hold: o.activeHold}
	done := make(chan error, 1)
	cpu0, _ := treeCPU("/proc", pid)
	go func() { done <- st.place(ctx, o, scenarioB2BUA, &s) }()
	select {
	case <-time.After(o.activeHold + 3*time.Second):
	case err := <-done:
		return a, fmt.Errorf("the caller ended before the calls were up: %w (%v)", err, s)
	}
	if a.Up, err = st.callees.current(); err != nil {
		return a, err
	}
	if a.ActiveKiB, err = treePss("/proc", pid); err != nil {
		return a, err
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
			b.WriteString("\n| scenario | transport | server | calls up | idle PSS MiB | PSS with the calls MiB | KiB per active call | failed % |\n")
			b.WriteString("|---|---|---|--:|--:|--:|--:|--:|\n")
		}
		a := r.active
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f | %.1f | %.1f | %.3f |\n", r.scenario, strings.ToUpper(r.transport), r.server,
			a.Up, mib(a.IdleKiB), mib(a.ActiveKiB), a.PerCallKiB(), 100*a.Step.FailedFraction())
	}
	return b.String()
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
		lines = append(lines, fmt.Sprintf("b2bua, memory per active call: %d calls held %v each, PSS of the server's process tree before the first call and on the plateau, divided by the calls the callees had up",
			o.activeCalls, o.activeHold))
	}
	return lines
}
