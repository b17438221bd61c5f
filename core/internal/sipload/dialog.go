package sipload

import (
	"bytes"
	"net"
	"strconv"
	"time"
)

// t2 is RFC 3261's longest interval between retransmissions of a
// non-INVITE request (Timer E) and of a 2xx (Timer G): 4 s.
const t2 = int64(4 * time.Second)

// dialogs are the full calls' dialogs (Config.FullCalls, UDP only). The
// receive side runs in the sender goroutine over UDP (udpWire.poll), so
// only that goroutine touches them.
type dialogs struct {
	w     *udpWire
	hold  time.Duration
	bye   [][]byte  // call i's BYE, from its 200 to the BYE's final answer
	held  []retrans // answered calls by when their BYE is due
	e     backoff   // Timer E of the BYEs in flight
	f     []retrans // Timer F: when a BYE without a final answer fails
	out   [][]byte  // the BYEs of this tick
	route [maxRoutes][]byte
	// host and port are the Target's: the generator sends only there,
	// so the next hop of every dialog must be the Target.
	host []byte
	port int
}

func newDialogs(cfg Config) *dialogs {
	d := &dialogs{hold: cfg.Hold, bye: make([][]byte, cfg.Calls), e: backoff{t1: int64(cfg.T1), ceiling: t2}}
	host, port, _ := net.SplitHostPort(cfg.Target)
	d.host = []byte(host)
	d.port, _ = strconv.Atoi(port)
	return d
}

// answer handles a 2xx to call i's INVITE: the first one, if it is the
// line's answer with SDP, puts the call up and schedules its BYE; every
// one is ACKed along the dialog's route set (RFC 3261 13.2.2.4: the ACK
// is resent for every retransmitted 2xx).
func (d *dialogs) answer(e *engine, i int, ln *Line, r *response, now int64, loc *local, cnt *counters, ack []byte) []byte {
	routes, ok := routeSet(d.route[:0], r.routes())
	target := uriOf(r.contact)
	hop := target
	if ok && len(routes) > 0 {
		hop = uriOf(routes[0])
		ok = isLooseRoute(routes[0]) // a strict router (RFC 2543) is not supported
	}
	host, port, hopOK := uriHostPort(hop)
	ok = ok && !r.tooMany && len(target) > 0 && hopOK && bytes.Equal(host, d.host) && port == d.port

	verdict, why := stateAnswered, -1
	switch {
	case !ok:
		verdict, why = stateFailed, failRouteSet
	case e.want(ln) != r.code:
		verdict, why = stateFailed, failStatus
	case !bytes.HasPrefix(r.body, []byte("v=0")):
		verdict, why = stateFailed, failNoSDP
	}
	if e.end(i, verdict, why, r.code, now, cnt) && verdict == stateAnswered {
		d.bye[i] = loc.appendInDialog(nil, "BYE", 2, i, ln, target, routes, r.to, "-b")
		d.held = append(d.held, retrans{call: int32(i), due: now + int64(d.hold)})
	}
	if !ok {
		return ack // nowhere to send it
	}
	return loc.appendInDialog(ack, "ACK", 1, i, ln, target, routes, r.to, "-a")
}

// byeAnswer handles an answer to a BYE: a final one ends the call.
func (d *dialogs) byeAnswer(e *engine, r *response, now int64, loc *local, cnt *counters) {
	i, ok := loc.callIndex(r.callID, e.n)
	switch {
	case !ok:
		cnt.unexpected++
	case r.code < 200:
	case e.state[i].Load() != stateHangingUp:
		cnt.duplicates++
	default:
		verdict, why := stateSuccessful, -1
		if r.code != 200 {
			verdict, why = stateFailed, failByeStatus
		}
		if e.move(i, 1<<stateHangingUp, verdict, now) {
			cnt.codes[r.code]++
			cnt.ended++
			if why >= 0 {
				cnt.failures[why]++
			}
			d.bye[i] = nil
		}
	}
}

// tick sends the BYEs due now and those Timer E resends, and fails the
// calls whose BYE went unanswered for Timeout (Timer F).
func (d *dialogs) tick(e *engine, now int64) {
	for len(d.held) > 0 && d.held[0].due <= now {
		c := d.held[0].call
		d.held = d.held[1:]
		if e.state[c].CompareAndSwap(stateAnswered, stateHangingUp) {
			d.out = append(d.out, d.bye[c])
			d.e.add(c, 1, now)
			d.f = append(d.f, retrans{call: c, due: now + int64(e.cfg.Timeout)})
		}
	}
	d.e.fire(now, func(c int32) bool {
		if e.state[c].Load() != stateHangingUp {
			return false
		}
		e.sender.retrans++
		d.out = append(d.out, d.bye[c])
		return true
	})
	for len(d.f) > 0 && d.f[0].due <= now {
		c := d.f[0].call
		d.f = d.f[1:]
		if e.move(int(c), 1<<stateHangingUp, stateFailed, now) {
			e.sender.failures[failByeTimeout]++
			e.finished.Add(1)
			d.bye[c] = nil
		}
	}
	if len(d.out) > 0 {
		d.w.sendBufs(d.out)
		clear(d.out)
		d.out = d.out[:0]
	}
}
