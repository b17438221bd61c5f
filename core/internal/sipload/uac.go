package sipload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultT1    = 500 * time.Millisecond
	DefaultBatch = 64
	DefaultTick  = time.Millisecond
)

// Config says what Run places and where.
type Config struct {
	// Target is the server, "127.0.0.1:5060" or "[::1]:5060".
	Target string
	// Transport is "udp" (default) or "tcp".
	Transport string
	// LocalIP is the address the UAC sends from; default 127.0.0.1, or
	// ::1 for an IPv6 Target.
	LocalIP string
	// Lines are the calls, placed in order; with Calls above len(Lines)
	// they start over at the first, as SIPp does with an injection file.
	Lines []Line
	// Calls is the number of calls to place; default len(Lines).
	Calls int
	// Rate is the number of new calls per second, held open-loop: call i
	// goes out at i/Rate s whatever the answers before it.
	Rate float64
	// T1 is RFC 3261's round-trip estimate: over UDP an unanswered INVITE
	// is sent again after T1, 2·T1, 4·T1 … Default DefaultT1.
	T1 time.Duration
	// Timeout is Timer B: a call without a final answer this long after
	// its INVITE fails. Default 64·T1.
	Timeout time.Duration
	// Conns is the number of TCP connections the calls are spread over,
	// round robin; default 1, as from one gateway. Ignored over UDP.
	Conns int
	// Batch is the number of datagrams per sendmmsg or recvmmsg; default
	// DefaultBatch.
	Batch int
	// FullCalls places every call as a full call through a proxy or
	// B2BUA (SIPp's uac_call_mix.xml): a line the Call Router would
	// redirect (3xx) must then be answered 200 with SDP by the back end
	// behind the server, and is ACKed along the route set, held for Hold
	// and hung up with a BYE in the dialog, which must get its 200; any
	// other line must get its status, ACKed. UDP only.
	FullCalls bool
	// Hold is how long an answered full call stays up before its BYE.
	Hold time.Duration
	// Tick is how often the sender wakes to send what is due, run the
	// timers and (UDP) drain the answers; default DefaultTick. Each
	// wake-up costs the Go runtime a few µs of scheduling whatever the
	// rate, so a longer tick costs less at the price of burstier sends.
	Tick time.Duration
}

// Result is what one run did.
type Result struct {
	// Planned is Config.Calls; Created counts the calls whose INVITE went
	// out; Successful those that got their line's answer (ACKed); Failed
	// those that got another answer or none in time.
	Planned, Created, Successful, Failed int
	// Retransmissions counts INVITEs sent again by Timer A and BYEs by
	// Timer E (UDP).
	Retransmissions int
	// Codes counts the first final answer of each call's INVITE and BYE
	// by status.
	Codes map[int]int
	// Failures counts the failed calls by reason: FailedUnexpectedStatus
	// (a final status not the line's), FailedContactMismatch (a 3xx whose
	// Contact is not the line's), FailedTimeoutOnRecv (no final answer
	// within Timeout), FailedConnectionClosed (TCP: the call's connection
	// broke before its INVITE went out); for full calls also
	// FailedNoSDP (a 200 without an SDP body), FailedRouteSet (a 200
	// whose route set or Contact does not lead back to the Target: the
	// generator sends only there), FailedByeStatus (a BYE answered other
	// than 200) and FailedByeTimeout (a BYE without a final answer within
	// Timeout).
	Failures map[string]int
	// Unexpected counts messages that are no answer to an INVITE of the
	// run; Duplicates final answers again for a call that had one, Late
	// final answers for a call Timer B had failed (each ACKed);
	// TransportErrors failed socket writes and reads.
	Unexpected, Duplicates, Late, TransportErrors int
	// FirstError is the first socket error, for the log.
	FirstError string `json:",omitempty"`
	// Elapsed runs from the first INVITE to the last call's end.
	Elapsed time.Duration
	// Latency is the time from a call's first INVITE to its final answer,
	// over the calls that got one; for a call whose INVITE the sender
	// could not send on time (a TCP write the server did not take, or the
	// generator's own work: SendLag) from the time it was due.
	Latency Latency
	// SendLag is the most an INVITE went out after its scheduled time:
	// near zero unless the generator could not keep the rate.
	SendLag time.Duration
	// CPU is the user and system CPU time the process used during the
	// run; CPU close to Elapsed means the generator was the limit.
	CPU time.Duration
}

// Latency summarises per-call latencies.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

// Achieved is the rate of successful calls over the run.
func (r *Result) Achieved() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Successful) / r.Elapsed.Seconds()
}

func (r *Result) String() string {
	return fmt.Sprintf("created %d successful %d failed %d %v retransmissions %d codes %v unexpected %d duplicates %d "+
		"in %v, latency p50 %v p99 %v max %v, send lag %v, cpu %v",
		r.Created, r.Successful, r.Failed, r.Failures, r.Retransmissions, r.Codes, r.Unexpected, r.Duplicates,
		r.Elapsed.Round(time.Millisecond), r.Latency.P50, r.Latency.P99, r.Latency.Max, r.SendLag, r.CPU.Round(time.Millisecond))
}

// The states of a call.
const (
	stateUnsent     uint32 = iota
	stateCalling           // INVITE sent, no answer yet (Timer A runs over UDP)
	stateProceeding        // a provisional answer came: no more retransmissions
	stateSuccessful        // its line's final answer came
	stateFailed            // another final answer
	stateTimedOut          // no final answer within Timeout (Timer B)
	stateAnswered          // full call: its 200 came and was ACKed; held until its BYE
	stateHangingUp         // full call: BYE sent, no final answer yet (Timer E runs)
)

// inviting are the states of a call whose INVITE awaits its final answer.
const inviting = 1<<stateCalling | 1<<stateProceeding

// The reasons a call fails, as Result.Failures names them.
const (
	failStatus = iota
	failContact
	failTimeout
	failConnection
	failNoSDP
	failRouteSet
	failByeStatus
	failByeTimeout
	nFailures
)

var failureNames = [nFailures]string{"FailedUnexpectedStatus", "FailedContactMismatch", "FailedTimeoutOnRecv", "FailedConnectionClosed",
	"FailedNoSDP", "FailedRouteSet", "FailedByeStatus", "FailedByeTimeout"}

// counters are one goroutine's counts, merged into the Result at the end.
type counters struct {
	codes                                       [700]int
	failures                                    [nFailures]int
	unexpected, duplicates, late, retrans, errs int
	// ended counts the calls a receive loop ended whose ACKs it has not
	// written yet; it adds them to engine.finished after the write, so
	// that the run does not close the socket before the last ACK.
	ended int
	// firstErr is the first socket error this goroutine met.
	firstErr error
}

// fail counts a socket error.
func (c *counters) fail(err error) {
	c.errs++
	if c.firstErr == nil {
		c.firstErr = err
	}
}

// engine is one run: the calls' state shared by the sender and the
// receive loops.
type engine struct {
	cfg   Config
	n     int
	start time.Time
	// inv holds every call's INVITE: call i's is inv[off[i]:off[i+1]].
	inv []byte
	off []int
	// state and sent (ns after start of the first INVITE) are written by
	// the sender and read by the receive loops; lat (µs to the final
	// answer) by the receive loop that ended the call, read after all
	// loops ended.
	state []atomic.Uint32
	sent  []atomic.Int64
	// from is where call i's latency starts: its first send, or the time
	// it was due when the sender was held up past it (its own work, or a
	// TCP write the server did not take): an open-loop latency counts the
	// wait the server caused.
	from     []atomic.Int64
	lat      []uint32
	finished atomic.Int64 // calls ended (and ACKed)
	last     atomic.Int64 // ns after start of the last call's end
	sender   counters
	dlg      *dialogs // Config.FullCalls only
}

// wire is a transport: it writes INVITEs from the sender goroutine and
// runs the receive loops.
type wire interface {
	// locals are the UAC's addresses, one per connection; call i uses
	// locals()[i%len].
	locals() []*local
	// send writes (UDP) or queues for flush (TCP) the INVITEs of calls; a
	// call it cannot send at all (a broken connection) it ends as failed.
	send(calls []int32, now int64)
	// flush, called by the sender at the end of every tick, writes what
	// send and the receive loops queued (TCP: one write per connection).
	flush()
	// receive starts the receive loops (in wg) that run until close, each
	// counting into a counters of its own, returned.
	receive(wg *sync.WaitGroup) []*counters
	// poll, called by the sender on every tick, handles what has come
	// in since the last (UDP, which has no receive loop of its own).
	poll()
	close()
}

// Run places cfg's calls and returns what they did. It returns an error
// when the config is invalid, the sockets cannot be set up, or ctx ends
// (with the Result so far).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	e := newEngine(cfg)
	var w wire
	switch cfg.Transport {
	case "udp":
		w, err = dialUDP(e, token)
	default:
		w, err = dialTCP(ctx, e, token)
	}
	if err != nil {
		return nil, err
	}
	if e.dlg != nil {
		e.dlg.w = w.(*udpWire) // withDefaults allows full calls over UDP only
	}
	e.render(w.locals())

	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	e.start = time.Now()
	var wg sync.WaitGroup
	recv := w.receive(&wg)
	lag, err := e.sendLoop(ctx, w)
	w.close()
	wg.Wait()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)

	res := e.result(append(recv, &e.sender))
	res.SendLag = time.Duration(lag)
	res.CPU = time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	if err != nil {
		return res, fmt.Errorf("sipload: %w", err)
	}
	return res, nil
}

func newEngine(cfg Config) *engine {
	e := &engine{cfg: cfg, n: cfg.Calls, state: make([]atomic.Uint32, cfg.Calls),
		sent: make([]atomic.Int64, cfg.Calls), from: make([]atomic.Int64, cfg.Calls), lat: make([]uint32, cfg.Calls)}
	if cfg.FullCalls {
		e.dlg = newDialogs(cfg)
	}
	return e
}

func (c Config) withDefaults() (Config, error) {
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.Calls == 0 {
		c.Calls = len(c.Lines)
	}
	timingDefaults(&c.T1, &c.Batch, &c.Tick)
	if c.Timeout == 0 {
		c.Timeout = 64 * c.T1
	}
	if c.Conns == 0 {
		c.Conns = 1
	}
	host, _, err := net.SplitHostPort(c.Target)
	ip := net.ParseIP(host)
	if c.LocalIP == "" && ip != nil {
		c.LocalIP = "127.0.0.1"
		if ip.To4() == nil {
			c.LocalIP = "::1"
		}
	}
	var bad []error
	add := func(format string, args ...any) {
		bad = append(bad, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if err != nil || ip == nil {
		add("target %q is not ip:port", c.Target)
	}
	if net.ParseIP(c.LocalIP) == nil {
		add("local ip %q", c.LocalIP)
	}
	if c.Transport != "udp" && c.Transport != "tcp" {
		add("transport %q is not udp or tcp", c.Transport)
	}
	if len(c.Lines) == 0 || c.Calls < 1 {
		add("%d lines, %d calls", len(c.Lines), c.Calls)
	}
	if c.Rate <= 0 || c.T1 < time.Millisecond || c.Timeout < c.T1 || c.Conns < 1 || c.Conns > 1024 || c.Batch < 1 || c.Batch > 1024 ||
		c.Tick < 100*time.Microsecond || c.Tick > c.T1/10 {
		add("rate %g, t1 %v, timeout %v, conns %d (1..1024), batch %d (1..1024), tick %v (100µs..t1/10)", c.Rate, c.T1, c.Timeout, c.Conns, c.Batch, c.Tick)
	}
	if c.FullCalls && c.Transport != "udp" {
		add("full calls over %s: only over udp", c.Transport)
	}
	if c.Hold < 0 || c.Hold > time.Hour || c.Hold > 0 && !c.FullCalls {
		add("hold %v (0..1h, full calls only)", c.Hold)
	}
	return c, errors.Join(bad...)
}

// timingDefaults sets zero T1, Batch and Tick to their defaults.
func timingDefaults(t1 *time.Duration, batch *int, tick *time.Duration) {
	if *t1 == 0 {
		*t1 = DefaultT1
	}
	if *batch == 0 {
		*batch = DefaultBatch
	}
	if *tick == 0 {
		*tick = DefaultTick
	}
}

func newToken() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sipload: run token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (e *engine) line(i int) *Line { return &e.cfg.Lines[i%len(e.cfg.Lines)] }

func (e *engine) now() int64 { return int64(time.Since(e.start)) }

// render writes every INVITE into one arena before the first is sent.
func (e *engine) render(locs []*local) {
	sdps := make([]string, len(locs))
	for c, l := range locs {
		sdps[c] = l.sdp()
	}
	one := locs[0].appendInvite(nil, e.n, e.line(0), sdps[0])
	e.inv = make([]byte, 0, e.n*(len(one)+48))
	e.off = make([]int, e.n+1)
	for i := range e.n {
		c := i % len(locs)
		e.inv = locs[c].appendInvite(e.inv, i, e.line(i), sdps[c])
		e.off[i+1] = len(e.inv)
	}
}

func (e *engine) invite(i int32) []byte { return e.inv[e.off[i]:e.off[i+1]] }

// retrans is a call waiting for its next Timer A: due at ns after start.
type retrans struct {
	call int32
	due  int64
}

// sendLoop sends the calls on schedule, runs Timer A and Timer B (and
// for full calls the hold and the BYE's timers), and returns when every
// call has ended; it returns the worst send lag.
func (e *engine) sendLoop(ctx context.Context, w wire) (int64, error) {
	var (
		next, a0, b0 int // next call to send; next to check for Timer A's first firing and for Timer B
		timerA       = backoff{t1: int64(e.cfg.T1)}
		batch        = make([]int32, 0, e.cfg.Batch)
		lag          int64
		udp          = e.cfg.Transport == "udp"
		t1           = int64(e.cfg.T1)
		timerB       = int64(e.cfg.Timeout)
		period       = 1e9 / e.cfg.Rate
		busy         int64 // when the last tick's work ended: a call due before it waited for the sender
	)
	tick := time.NewTicker(e.cfg.Tick)
	defer tick.Stop()
	flush := func(now int64) {
		if len(batch) > 0 {
			w.send(batch, now)
			batch = batch[:0]
		}
	}
	for {
		w.poll()
		now := e.now()
		due := min(e.n, int(float64(now)/period)+1)
		if next < due {
			lag = max(lag, now-int64(float64(next)*period))
		}
		for ; next < due; next++ {
			e.sent[next].Store(now)
			// Due while the sender was held up: the wait counts. Due while
			// it slept for the tick: it does not (the tick is the
			// generator's grain, not the server's latency).
			from := now
			if at := int64(float64(next) * period); at < busy {
				from = at
			}
			e.from[next].Store(from)
			e.state[next].Store(stateCalling)
			if batch = append(batch, int32(next)); len(batch) == cap(batch) {
				flush(now)
			}
		}
		flush(now)

		if udp {
			// RFC 3261 17.1.1.2: Timer A fires at T1, then at twice the
			// interval before, while no answer came.
			again := func(call int32) bool {
				if e.state[call].Load() != stateCalling {
					return false
				}
				e.sender.retrans++
				if batch = append(batch, call); len(batch) == cap(batch) {
					flush(now)
				}
				return true
			}
			for ; a0 < next && e.sent[a0].Load()+t1 <= now; a0++ {
				if again(int32(a0)) {
					timerA.add(int32(a0), 2, now)
				}
			}
			timerA.fire(now, again)
			flush(now)
		}
		for ; b0 < next && e.sent[b0].Load()+timerB <= now; b0++ {
			if e.finish(b0, stateTimedOut, now) {
				e.sender.failures[failTimeout]++
				e.finished.Add(1)
			}
		}
		if e.dlg != nil {
			e.dlg.tick(e, now)
		}
		w.flush()
		if next == e.n && e.finished.Load() == int64(e.n) {
			return lag, nil
		}
		busy = e.now()
		select {
		case <-ctx.Done():
			return lag, ctx.Err()
		case <-tick.C:
		}
	}
}

// backoff is a retransmission timer (RFC 3261 Timers A, E and G): a
// message sent n times goes again T1·2^(n-1) later, at most ceiling apart
// (0 = no ceiling).
type backoff struct {
	t1, ceiling int64
	queues      [][]retrans // queues[k]: calls sent k+1 times; due times rise in each
}

// add schedules call, sent sends times by now, for its next sending.
func (b *backoff) add(call int32, sends int, now int64) {
	k := sends - 1
	for len(b.queues) <= k {
		b.queues = append(b.queues, nil)
	}
	d := b.t1 << min(k, 30)
	if b.ceiling > 0 {
		d = min(d, b.ceiling)
	}
	b.queues[k] = append(b.queues[k], retrans{call: call, due: now + d})
}

// fire calls again for each call due by now; again sends it and reports
// whether it did, which schedules it once more.
func (b *backoff) fire(now int64, again func(call int32) bool) {
	for k := 0; k < len(b.queues); k++ {
		q := b.queues[k]
		j := 0
		for ; j < len(q) && q[j].due <= now; j++ {
			if again(q[j].call) {
				b.add(q[j].call, k+2, now)
			}
		}
		b.queues[k] = q[j:]
	}
}

// finish ends call i in state to unless its INVITE has its final answer
// or Timer B fired; it reports whether this call ended it. The caller
// counts it in finished.
func (e *engine) finish(i int, to uint32, now int64) bool {
	return e.move(i, inviting, to, now)
}

// move puts call i from one of the states in the mask from into state to
// (the call's end); it reports whether it did.
func (e *engine) move(i int, from uint32, to uint32, now int64) bool {
	for {
		s := e.state[i].Load()
		if from&(1<<s) == 0 {
			return false
		}
		if e.state[i].CompareAndSwap(s, to) {
			break
		}
	}
	for {
		old := e.last.Load()
		if now <= old || e.last.CompareAndSwap(old, now) {
			break
		}
	}
	return true
}

// acked adds the calls cnt ended to the finished ones, once their ACKs
// are written.
func (e *engine) acked(cnt *counters) {
	if cnt.ended > 0 {
		e.finished.Add(int64(cnt.ended))
		cnt.ended = 0
	}
}

// handle checks one message from the server, received at now, and appends
// the ACK it calls for to ack.
func (e *engine) handle(msg []byte, now int64, loc *local, cnt *counters, ack []byte) []byte {
	var r response
	if !parseMessage(msg, &r) {
		cnt.unexpected++
		return ack
	}
	return e.handleParsed(&r, now, loc, cnt, ack)
}

func (e *engine) handleParsed(r *response, now int64, loc *local, cnt *counters, ack []byte) []byte {
	if r.code != 0 && e.dlg != nil && isCSeq(r.cseq, 2, "BYE") {
		e.dlg.byeAnswer(e, r, now, loc, cnt)
		return ack
	}
	if r.code == 0 || !isInviteCSeq(r.cseq) {
		cnt.unexpected++
		return ack
	}
	i, ok := loc.callIndex(r.callID, e.n)
	if !ok || e.state[i].Load() == stateUnsent {
		cnt.unexpected++
		return ack
	}
	if r.code < 200 {
		e.state[i].CompareAndSwap(stateCalling, stateProceeding)
		return ack
	}
	ln := e.line(i)
	if e.dlg != nil && r.code/100 == 2 {
		return e.dlg.answer(e, i, ln, r, now, loc, cnt, ack)
	}
	verdict, why := stateSuccessful, -1
	switch {
	case r.code != e.want(ln):
		verdict, why = stateFailed, failStatus
	case ln.Contact != "" && r.code/100 == 3:
		if got, ok := contactTarget(r.contact); !ok || string(got) != ln.Contact {
			verdict, why = stateFailed, failContact
		}
	}
	e.end(i, verdict, why, r.code, now, cnt)
	return loc.appendAck(ack, i, ln, r.to)
}

// want is the final status line ln must get: its own, or for a full call
// the back end's 200 where the Call Router would redirect.
func (e *engine) want(ln *Line) int {
	if e.dlg != nil && ln.Code/100 == 3 {
		return 200
	}
	return ln.Code
}

// end puts call i, whose INVITE got the final answer code, in state
// verdict (failed for reason why, or why -1; answered: a full call is up,
// not ended) and reports whether this was its first final answer; it
// counts a repeated or late one.
func (e *engine) end(i int, verdict uint32, why, code int, now int64, cnt *counters) bool {
	if e.finish(i, verdict, now) {
		cnt.codes[code]++
		if verdict != stateAnswered {
			cnt.ended++
		}
		if why >= 0 {
			cnt.failures[why]++
		}
		e.lat[i] = uint32(min(max(now-e.from[i].Load(), 0)/1000+1, 1<<32-1)) // 0 = no answer
		return true
	}
	if e.state[i].Load() == stateTimedOut {
		cnt.late++
	} else {
		cnt.duplicates++
	}
	return false
}

// fail ends the unsent-over calls as failed for reason (the sender's).
func (e *engine) fail(calls []int32, reason int, now int64) {
	for _, c := range calls {
		if e.finish(int(c), stateFailed, now) {
			e.sender.failures[reason]++
			e.finished.Add(1)
		}
	}
}

func (e *engine) result(cnts []*counters) *Result {
	res := &Result{Planned: e.n, Codes: map[int]int{}, Failures: map[string]int{}, Elapsed: time.Duration(e.last.Load())}
	var lats []uint32
	for i := range e.state {
		switch e.state[i].Load() {
		case stateUnsent:
			continue
		case stateSuccessful:
			res.Successful++
		case stateFailed, stateTimedOut:
			res.Failed++
		}
		res.Created++
		if e.lat[i] > 0 {
			lats = append(lats, e.lat[i]-1)
		}
	}
	for _, c := range cnts {
		for code, n := range c.codes {
			if n > 0 {
				res.Codes[code] += n
			}
		}
		for k, n := range c.failures {
			if n > 0 {
				res.Failures[failureNames[k]] += n
			}
		}
		res.Unexpected += c.unexpected
		res.Duplicates += c.duplicates
		res.Late += c.late
		res.Retransmissions += c.retrans
		res.TransportErrors += c.errs
		if c.firstErr != nil && res.FirstError == "" {
			res.FirstError = c.firstErr.Error()
		}
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		at := func(q float64) time.Duration {
			return time.Duration(lats[min(len(lats)-1, int(q*float64(len(lats))))]) * time.Microsecond
		}
		res.Latency = Latency{N: len(lats), P50: at(0.5), P99: at(0.99), Max: at(1)}
	}
	return res
}
