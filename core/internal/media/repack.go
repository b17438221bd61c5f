package media

import (
	"encoding/binary"
	"strings"
)

// # Re-packetising (R-SBC-3, LegProfile.Ptime)
//
// A leg whose profile has a ptime gets audio in packets of that many ms,
// whatever the other leg's peer sends: the relay joins or splits the
// packets of the payloads that allow it (AudioCodes' "packetization
// time" per coder group, rtpengine's ptime=) rather than only rewrite the
// a=ptime of the SDP, which would lie to the peer.
//
// After each answer, each direction of an audio stream, from leg X's peer
// to leg Y's, gets a target: Y's profile ptime; else, when X's profile
// has one (so X's peer was asked to send it), the ptime Y's own SDP asked
// for, or its maxptime when what X sends is longer; else none. What X
// sends is X's profile ptime, else X's SDP's a=ptime, else RFC 3551's
// 20 ms. The direction re-packetises when the target is set and differs
// from what X sends; a peer that sends other than its SDP says is
// re-packetised only when the direction is. The SDP's a=ptime is the
// profile's whatever the codec: Opus, GSM or video pass as they come (a
// codec whose frames the relay does not know cannot be cut). An SRTP
// stream passed through
// with the endpoints' keys (both legs "as is") is not re-packetised: its
// payload is not ours to read.
//
// The payloads it joins and splits are the sample codecs PCMU (0), PCMA
// (8) and G722 (9), a byte a sample of the 8000 Hz RTP clock (G.722's
// clock is 8000 although it samples at 16 kHz, RFC 3551 §4.5.2): any
// number of bytes makes a packet. And G.729 (18): 10-byte frames of 10 ms,
// with at most one 2-byte Annex B SID frame, which ends a packet (DTX
// follows): the pending frames go out with it. A packet out takes the
// header of the packet of its first frame (SSRC, CSRCs, extension; no
// padding), that frame's timestamp, a sequence number of the direction's
// own (continuous: it starts at the first packet's and counts up by one a
// packet out) and the marker bit when its first frame began a talkspurt.
// Pending frames go out first, as a packet of their own, when the next
// packet does not continue them: a sequence gap, another SSRC, another
// payload type, a marker bit, a timestamp that does not follow on (no
// frame from before a gap is glued to one after it). RFC 4733 events,
// comfort noise (13) and every other payload type pass alone, at once and
// in order, unchanged but for their sequence number in the same space
// (pending audio goes out before them). So does a packet of a
// re-packetised codec that is not whole frames (G.729 not a multiple of 10
// bytes beside its SID, an empty payload, a header whose CSRCs, extension
// or padding overrun it), counted as irregular.
//
// Pending audio waits for the next packet at most the target ptime from
// its arrival, or, when it is what was left of a longer packet split (30
// ms to 20 leaves 10, which the next 30 completes), that packet's length
// and half the target: then it goes out short, by the worker's timer
// (worker.expire), so no audio stays at a talkspurt's end. Once a
// direction has re-packetised, its renumbering goes on after a re-INVITE
// takes the need away (its sequence space stays the relay's: the SRTP
// index of what the engine encrypts never repeats under a key).
//
// # RTCP of a re-packetised stream
//
// The other leg's reports describe the stream the relay made (its
// sequence numbers, its packet and byte counts), not the one the peer
// sent; the engine does not rewrite them: on a stream that re-packetises
// either way RTCP is not relayed between the legs, and each leg's peer
// gets the engine's own receiver reports on what it sends (rtcp.go), as
// an SRTP leg whose other side sends no RTCP does. The kernel fast path
// never takes such a call (offload.go): it is payload work.

// frameKind is how the relay re-packetises a payload type.
type frameKind uint8

const (
	frameAlone  frameKind = iota // passes alone, renumbered: telephone-event, CN, anything unknown
	frameSample                  // PCMU, PCMA, G722: a byte a sample
	frameG729                    // G.729: 10-byte frames, a 2-byte SID at a packet's end (Annex B)
)

// frameKindOf classifies an encoding name at its RTP clock rate.
func frameKindOf(name string, clock uint32) frameKind {
	if clock != 8000 {
		return frameAlone
	}
	switch strings.ToUpper(name) {
	case "PCMU", "PCMA", "G722":
		return frameSample
	case "G729":
		return frameG729
	}
	return frameAlone
}

// defaultPtime is RFC 3551's packetisation of audio whose SDP says none.
const defaultPtime = 20

// Frame sizes of G.729 (ITU-T G.729 Annex B, RFC 3551 §4.5.6).
const (
	g729Frame = 10 // bytes of a 10 ms frame
	g729SID   = 2  // bytes of a SID frame
)

// emitter is where a repacker's packets go: scratch is a buffer for one
// packet, valid until send has taken it (the worker's, for the next
// queue slot); send puts a plain RTP packet out of the leg.
type emitter interface {
	scratch() []byte
	emit(pkt []byte)
}

// repacker re-packetises the audio of one direction of a stream towards
// the leg it belongs to. Guarded by the session's mutex; it allocates
// nothing per packet.
type repacker struct {
	target int           // ms of audio a packet out; 0: renumber only
	pts    *ptTable      // the leg's payload types
	buf    [bufSize]byte // the pending packet: header, then payload
	hlen   int           // header bytes in buf
	n      int           // payload bytes pending
	pt     uint8         // of the pending frames
	marker bool          // the pending frames began a talkspurt
	ts     uint32        // of the first pending frame
	nextTS uint32        // the timestamp that continues the pending frames
	due    int64         // unix ns: the pending frames go out by then
	in     struct {      // the input's continuity
		started bool
		seq     uint16
		ssrc    uint32
	}
	seq                   uint16 // the next sequence number out
	packetsIn, packetsOut uint64
	irregular             uint64
}

func newRepacker(pts *ptTable, target int) *repacker {
	return &repacker{pts: pts, target: target}
}

// bytesPerMs is the payload bytes of one ms of kind: 64 kbit/s for the
// sample codecs, 8 kbit/s for G.729.
func bytesPerMs(k frameKind) int {
	if k == frameG729 {
		return 1
	}
	return 8
}

// ticks is the RTP timestamp length of n payload bytes of kind (8000 Hz).
func ticks(k frameKind, n int) uint32 {
	return uint32(n * 8 / bytesPerMs(k)) //nolint:gosec // n < bufSize
}

// targetBytes is the payload of a full packet out: whole frames, one at
// least.
func (r *repacker) targetBytes(k frameKind) int {
	n := r.target * bytesPerMs(k)
	if k == frameG729 {
		n = max(n/g729Frame, 1) * g729Frame
	}
	return n
}

// rtpPayload returns the header length of pkt and where its payload ends
// (before its padding), false when the CSRCs, extension or padding the
// header announces overrun the packet (RFC 3550 §5.1, §5.3.1).
func rtpPayload(pkt []byte) (h, end int, ok bool) {
	if len(pkt) < 12 {
		return 0, 0, false
	}
	h = 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < h+4 {
			return 0, 0, false
		}
		h += 4 + 4*int(binary.BigEndian.Uint16(pkt[h+2:]))
	}
	end = len(pkt)
	if pkt[0]&0x20 != 0 {
		if end == 0 || int(pkt[end-1]) == 0 {
			return 0, 0, false
		}
		end -= int(pkt[end-1])
	}
	if h > end {
		return 0, 0, false
	}
	return h, end, true
}

// push takes one plain RTP packet of the direction, received at now, and
// sends what it makes out through o. pkt is the worker's buffer: a packet
// that passes alone is renumbered in place.
func (r *repacker) push(pkt []byte, now int64, o emitter) {
	if len(pkt) < 12 {
		r.irregular++ // the leg passes none; a caller's bug, not a peer's
		return
	}
	r.packetsIn++
	seq, ts, ssrc := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), binary.BigEndian.Uint32(pkt[8:])
	pt, marker := pkt[1]&0x7f, pkt[1]&0x80 != 0
	follows := r.in.started && ssrc == r.in.ssrc && seq == r.in.seq+1
	if !r.in.started {
		r.seq = seq // the stream's numbering goes on where it begins
	}
	r.in.started, r.in.seq, r.in.ssrc = true, seq, ssrc

	kind := r.pts.get(pt).codec
	h, end, ok := rtpPayload(pkt)
	if r.target == 0 || kind == frameAlone || !ok {
		if !ok {
			r.irregular++
		}
		r.alone(pkt, o)
		return
	}
	if r.n >= r.targetBytes(r.pts.get(r.pt).codec) {
		r.flush(o) // the target shrank under it (a re-INVITE)
	}
	payload := pkt[h:end]
	voice, sid := len(payload), 0
	if kind == frameG729 && voice%g729Frame == g729SID {
		voice, sid = voice-g729SID, g729SID
	}
	full := r.targetBytes(kind)
	if len(payload) == 0 || kind == frameG729 && voice%g729Frame != 0 || h+full+g729SID > len(r.buf) {
		r.irregular++
		r.alone(pkt, o)
		return
	}
	if r.n > 0 && (!follows || marker || pt != r.pt || ts != r.nextTS) {
		r.flush(o) // not the pending frames' continuation
	}
	// What this packet leaves pending waits for the next one: the target's
	// length, or this packet's and half the target's when a longer packet
	// was split (30 ms to 20 leaves 10 for the next 30).
	hold := int64(r.target) * 1e6
	if in := int64(voice) * 1e6 / int64(bytesPerMs(kind)); in > hold {
		hold = in + hold/2
	}
	for off := 0; off < voice; {
		if r.n == 0 {
			r.start(pkt[:h], pt, ts+ticks(kind, off), marker && off == 0, now+hold)
		}
		take := min(full-r.n, voice-off)
		copy(r.buf[r.hlen+r.n:], payload[off:off+take])
		r.n += take
		off += take
		if r.n >= full {
			r.flush(o)
		}
	}
	if sid > 0 {
		if r.n == 0 {
			r.start(pkt[:h], pt, ts+ticks(kind, voice), marker && voice == 0, now)
		}
		copy(r.buf[r.hlen+r.n:], payload[voice:])
		r.n += sid
		r.flush(o) // DTX follows a SID: nothing continues it
	}
	r.nextTS = ts + ticks(kind, voice)
}

// start makes the pending packet begin with the header hdr of the packet
// of its first frame, due to go out by due.
func (r *repacker) start(hdr []byte, pt uint8, ts uint32, marker bool, due int64) {
	r.hlen = copy(r.buf[:], hdr)
	r.pt, r.ts, r.marker, r.due = pt, ts, marker, due
}

// flush sends the pending frames, if any, as one packet.
func (r *repacker) flush(o emitter) {
	if r.n == 0 {
		return
	}
	b := o.scratch()[:r.hlen+r.n]
	copy(b, r.buf[:r.hlen+r.n])
	b[0] &^= 0x20 // its padding was the input's
	b[1] = pt8(r.pt, r.marker)
	binary.BigEndian.PutUint16(b[2:], r.seq)
	binary.BigEndian.PutUint32(b[4:], r.ts)
	r.seq++
	r.n = 0
	r.packetsOut++
	o.emit(b)
}

// alone sends pkt as it is after the pending frames, renumbered.
func (r *repacker) alone(pkt []byte, o emitter) {
	r.flush(o)
	binary.BigEndian.PutUint16(pkt[2:], r.seq)
	r.seq++
	r.packetsOut++
	o.emit(pkt)
}

// expire sends the pending frames when they are due at now, and says
// whether some are still pending.
func (r *repacker) expire(now int64, o emitter) bool {
	if r.n > 0 && now >= r.due {
		r.flush(o)
	}
	return r.n > 0
}

// repack runs a packet the relay sends out of l through its repacker, and
// puts l on the worker's list when audio stays pending.
func (l *leg) repack(w *worker, pkt []byte) {
	if l.off {
		return
	}
	l.rp.push(pkt, w.now, l)
	w.pending(l)
}

// scratch and emit make the leg the emitter of its repacker: the worker's
// buffer for the next queue slot, and the leg's own way out.
func (l *leg) scratch() []byte { return l.sess.w.scratch() }
func (l *leg) emit(pkt []byte) { l.sendRTP(l.sess.w, pkt) }

var _ emitter = (*leg)(nil)

func pt8(pt uint8, marker bool) byte {
	if marker {
		return pt | 0x80
	}
	return pt
}

// repackTarget is the ptime the relay sends out of leg y, whose stream's
// other leg is x, or 0 for as received.
func repackTarget(y, x *leg) int {
	switch {
	case y.prof.Ptime > 0:
		return y.prof.Ptime
	case x.prof.Ptime == 0:
		return 0 // neither profile asks for one: the relay stays transparent
	case y.sdpPtime > 0:
		return min(max(y.sdpPtime, minPtime), maxPtime)
	case y.sdpMaxptime > 0 && sendsPtime(x) > y.sdpMaxptime:
		return max(y.sdpMaxptime, minPtime)
	}
	return 0
}

// sendsPtime is what leg x's peer sends, as far as signalling says.
func sendsPtime(x *leg) int {
	switch {
	case x.prof.Ptime > 0:
		return x.prof.Ptime
	case x.sdpPtime > 0:
		return x.sdpPtime
	}
	return defaultPtime
}

// configureRepack sets, after an answer, what the relay does to the audio
// stream of legs a and b each way (see above); pass: SRTP passes through
// with the endpoints' keys, or the stream is not audio: nothing is
// touched. Called with the session locked.
func configureRepack(a, b *leg, pass bool) {
	for _, d := range [][2]*leg{{a, b}, {b, a}} {
		x, y := d[0], d[1]
		switch t := repackTarget(y, x); {
		case pass:
			y.rp = nil
		case t != 0 && t != sendsPtime(x):
			if y.rp == nil {
				y.rp = newRepacker(&y.pt, t)
			}
			y.rp.target = t
		case y.rp != nil:
			y.rp.target = 0 // renumbering goes on: the sequence space stays the relay's
		}
	}
	own := a.rp != nil || b.rp != nil
	a.ownRTCP, b.ownRTCP = own, own
}
