package sipload

import (
	"context"
	"sync"
	"testing"
	"time"
)

// stallWire answers every INVITE at once with its line's answer, but its
// first flush blocks for stall, as a TCP write does while the server
// does not read (its receive window shut).
type stallWire struct {
	e       *engine
	loc     *local
	stall   time.Duration
	due     []int32
	stalled bool
	cnt     counters
}

func (w *stallWire) locals() []*local            { return []*local{w.loc} }
func (w *stallWire) send(calls []int32, _ int64) { w.due = append(w.due, calls...) }
func (w *stallWire) receive(*sync.WaitGroup) []*counters {
	return []*counters{&w.cnt}
}
func (w *stallWire) poll()  {}
func (w *stallWire) close() {}

func (w *stallWire) flush() {
	if len(w.due) > 0 && !w.stalled {
		time.Sleep(w.stall)
		w.stalled = true
	}
	for _, i := range w.due {
		ln := w.e.line(int(i))
		r := response{code: ln.Code, callID: w.loc.appendCallID(nil, int(i)), cseq: []byte("1 INVITE"), to: []byte("<sip:x@y>;tag=t")}
		if ln.Contact != "" {
			r.contact = []byte("<sip:" + ln.Contact + ";transport=tcp>")
		}
		w.e.handleParsed(&r, w.e.now(), w.loc, &w.cnt, nil)
	}
	w.due = w.due[:0]
	w.e.acked(&w.cnt)
}

// An open-loop generator's latency runs from when a call was due, not
// from when the wire let its INVITE out: a server that stops reading (TCP
// flow control blocks the sender's write) makes the calls due meanwhile
// wait, and that wait is the server's latency. Measured from the late
// send, 300 ms of stall show as ~0 (coordinated omission).
func TestLatencyCountsTheWaitForTheWire(t *testing.T) {
	const stall = 300 * time.Millisecond
	_, lines := newFakeRouter(t, 100)
	cfg, err := Config{Target: "127.0.0.1:5060", Transport: "tcp", Lines: lines, Rate: 1000, Timeout: 5 * time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(cfg)
	w := &stallWire{e: e, loc: newLocal("127.0.0.1", 5062, "TCP", cfg.Target, "tok"), stall: stall}
	e.render(w.locals())
	e.start = time.Now()
	if _, err := e.sendLoop(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	res := e.result([]*counters{&w.cnt, &e.sender})
	t.Logf("%s", res)
	if res.Successful != 100 {
		t.Fatalf("result %s, want 100 successful", res)
	}
	// The 100 calls were due at 0 … 99 ms and answered at ~300 ms.
	if res.Latency.P50 < stall/2 {
		t.Errorf("latency p50 %v with every call answered ≥ %v after it was due, want at least %v", res.Latency.P50, stall-100*time.Millisecond, stall/2)
	}
}
