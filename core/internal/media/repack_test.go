package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// collect is an emitter that keeps copies of what a repacker sends.
type collect struct {
	buf  [bufSize]byte
	pkts [][]byte
}

func (c *collect) scratch() []byte { return c.buf[:] }
func (c *collect) emit(p []byte)   { c.pkts = append(c.pkts, bytes.Clone(p)) }

// testPTs is a payload-type table as an answer with PCMU, PCMA, G722,
// G729, CN and telephone-event (101) leaves it.
func testPTs() *ptTable {
	var pts ptTable
	for _, f := range []struct {
		pt    int
		name  string
		clock uint32
	}{{0, "PCMU", 8000}, {8, "PCMA", 8000}, {9, "G722", 8000}, {18, "G729", 8000}, {13, "CN", 8000}, {101, "telephone-event", 8000}, {96, "opus", 48000}} {
		pts.set(f.pt, ptInfo{known: true, clock: f.clock, codec: frameKindOf(f.name, f.clock)})
	}
	return &pts
}

// audio builds an RTP packet of payload type pt whose payload is n bytes
// counting on from *next, so that a concatenation shows its order.
func audio(pt uint8, seq uint16, ts, ssrc uint32, marker bool, n int, next *byte) []byte {
	p := make([]byte, 12+n)
	p[0], p[1] = 0x80, pt8(pt, marker)
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], ts)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	for i := range n {
		p[12+i] = *next
		*next++
	}
	return p
}

// rtpIn is a packet to send: its header's fields and payload length.
type rtpIn struct {
	pt     uint8
	seq    uint16
	ts     uint32
	ssrc   uint32
	marker bool
	n      int
}

func (g rtpIn) build(next *byte) []byte { return audio(g.pt, g.seq, g.ts, g.ssrc, g.marker, g.n, next) }

type outPkt struct {
	seq    uint16
	ts     uint32
	marker bool
	pt     uint8
	n      int
}

func (o outPkt) String() string {
	return fmt.Sprintf("{seq %d ts %d m %v pt %d %dB}", o.seq, o.ts, o.marker, o.pt, o.n)
}

func parseOut(p []byte) outPkt {
	return outPkt{seq: binary.BigEndian.Uint16(p[2:]), ts: binary.BigEndian.Uint32(p[4:]), marker: p[1]&0x80 != 0, pt: p[1] & 0x7f, n: len(p) - 12}
}

// payloads is the concatenation of the payloads of pkts of payload type pt.
func payloads(pkts [][]byte, pt uint8) []byte {
	var b []byte
	for _, p := range pkts {
		if p[1]&0x7f == pt {
			b = append(b, p[12:]...)
		}
	}
	return b
}

// TestRepackerJoinSplit: every exact conversion of PCMU and G.729 keeps
// the bytes in order, takes each packet's timestamp from its first frame
// and numbers the packets on from the first one's sequence number.
func TestRepackerJoinSplit(t *testing.T) {
	tests := []struct {
		name          string
		pt            uint8
		giveMs, ms    int // in and out packetisation
		giveN         int // packets in
		bytesMs, tick int // payload bytes and timestamp ticks a ms
	}{
		{"PCMU 10 to 20", 0, 10, 20, 12, 8, 8},
		{"PCMU 20 to 10", 0, 20, 10, 5, 8, 8},
		{"PCMU 30 to 20", 0, 30, 20, 4, 8, 8},
		{"PCMU 20 to 60", 0, 20, 60, 9, 8, 8},
		{"PCMA 60 to 20", 8, 60, 20, 2, 8, 8},
		{"G722 20 to 30", 9, 20, 30, 6, 8, 8},
		{"G729 10 to 20", 18, 10, 20, 12, 1, 8},
		{"G729 20 to 10", 18, 20, 10, 5, 1, 8},
		{"G729 30 to 20", 18, 30, 20, 4, 1, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepacker(testPTs(), tt.ms)
			var c collect
			var next byte
			var in []byte
			for i := range tt.giveN {
				p := audio(tt.pt, uint16(60000+i), uint32(1000+i*tt.giveMs*tt.tick), 0xA, i == 0, tt.giveMs*tt.bytesMs, &next) //nolint:gosec // test values
				in = append(in, p[12:]...)
				r.push(p, 0, &c)
			}
			if r.n != 0 {
				t.Fatalf("%d bytes left pending after an exact conversion", r.n)
			}
			want := tt.giveN * tt.giveMs / tt.ms
			if len(c.pkts) != want {
				t.Fatalf("%d packets out, want %d", len(c.pkts), want)
			}
			if got := payloads(c.pkts, tt.pt); !bytes.Equal(got, in) {
				t.Fatalf("payloads out are not the frames in, in order:\n got %x\nwant %x", got, in)
			}
			for i, p := range c.pkts {
				o := parseOut(p)
				w := outPkt{seq: uint16(60000 + i), ts: uint32(1000 + i*tt.ms*tt.tick), marker: i == 0, pt: tt.pt, n: tt.ms * tt.bytesMs} //nolint:gosec // test values
				if o != w {
					t.Errorf("packet %d = %v, want %v", i, o, w)
				}
			}
		})
	}
}

// TestRepackerBreaks: what is pending goes out alone at a sequence gap, a
// new SSRC, a new payload type, a marker bit, a timestamp that does not
// follow; an RFC 4733 event and comfort noise pass alone, at once, in the
// sequence; the G.729 SID frame ends a packet.
func TestRepackerBreaks(t *testing.T) {
	type in = rtpIn
	tests := []struct {
		name string
		ms   int
		give []in
		want []outPkt
	}{
		{name: "sequence gap", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 2, 80, 0xA, false, 80}, {0, 3, 160, 0xA, false, 80},
			{0, 5, 320, 0xA, false, 80}, {0, 6, 400, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 160}, {2, 160, false, 0, 80}, {3, 320, false, 0, 160}}},
		{name: "sequence gap with timestamps that follow on", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 3, 80, 0xA, false, 80}, {0, 4, 160, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 80, false, 0, 160}}},
		{name: "SSRC change", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 2, 80, 0xB, false, 80}, {0, 3, 160, 0xB, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 80, false, 0, 160}}},
		{name: "payload type change", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {8, 2, 80, 0xA, false, 80}, {8, 3, 160, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 80, false, 8, 160}}},
		{name: "marker bit starts a talkspurt", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 2, 4000, 0xA, true, 80}, {0, 3, 4080, 0xA, false, 80}, {0, 4, 4160, 0xA, false, 80}, {0, 5, 4240, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 4000, true, 0, 160}, {3, 4160, false, 0, 160}}},
		{name: "timestamp jump without a marker", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 2, 800, 0xA, false, 80}, {0, 3, 880, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 800, false, 0, 160}}},
		{name: "DTMF event in a partial packet", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {101, 2, 80, 0xA, true, 4}, {0, 3, 80, 0xA, false, 80}, {0, 4, 160, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 80, true, 101, 4}, {3, 80, false, 0, 160}}},
		{name: "comfort noise alone", ms: 30, give: []in{
			{0, 1, 0, 0xA, false, 80}, {0, 2, 80, 0xA, false, 80}, {13, 3, 160, 0xA, false, 1}, {0, 4, 800, 0xA, true, 80},
		}, want: []outPkt{{1, 0, false, 0, 160}, {2, 160, false, 13, 1}}},
		{name: "another payload type passes alone", ms: 20, give: []in{
			{0, 1, 0, 0xA, false, 80}, {96, 2, 0, 0xA, false, 300}, {0, 3, 80, 0xA, false, 80},
		}, want: []outPkt{{1, 0, false, 0, 80}, {2, 0, false, 96, 300}}},
		{name: "G.729 SID ends the packet with the frames before it", ms: 20, give: []in{
			{18, 1, 0, 0xA, true, 10}, {18, 2, 80, 0xA, false, 10}, {18, 3, 160, 0xA, false, 10}, {18, 4, 240, 0xA, false, 2},
			{18, 5, 2000, 0xA, true, 22}, // two frames and a SID in one packet
		}, want: []outPkt{{1, 0, true, 18, 20}, {2, 160, false, 18, 12}, {3, 2000, true, 18, 20}, {4, 2160, false, 18, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepacker(testPTs(), tt.ms)
			var c collect
			var next byte
			for _, g := range tt.give {
				r.push(g.build(&next), 0, &c)
			}
			var got []outPkt
			for _, p := range c.pkts {
				got = append(got, parseOut(p))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("out\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestRepackerDue: pending audio is due after the target ptime, or after
// the split packet's length and half the target; expire sends it then.
func TestRepackerDue(t *testing.T) {
	const ms = int64(1e6)
	var next byte
	for _, tt := range []struct {
		name            string
		target, inMs, n int
		wantDue         int64
	}{
		{"10 to 20: the target", 20, 10, 1, 20 * ms},
		{"30 to 20: 30 and 10", 20, 30, 1, 40 * ms},
		{"20 to 30: the target", 30, 20, 1, 30 * ms},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepacker(testPTs(), tt.target)
			var c collect
			r.push(audio(0, 1, 0, 0xA, false, tt.inMs*8, &next), 1000, &c)
			if r.n == 0 || r.due != 1000+tt.wantDue {
				t.Fatalf("pending %d due %d, want some due at %d", r.n, r.due, 1000+tt.wantDue)
			}
			sent := len(c.pkts)
			if !r.expire(1000+tt.wantDue-1, &c) || len(c.pkts) != sent {
				t.Fatal("sent before it was due")
			}
			if r.expire(1000+tt.wantDue, &c) || len(c.pkts) != sent+1 {
				t.Fatal("not sent when due")
			}
		})
	}
}

// TestRepackerIrregular: packets that are not whole frames, or whose
// header overruns them, pass alone and are counted; nothing is lost or
// reordered around them.
func TestRepackerIrregular(t *testing.T) {
	r := newRepacker(testPTs(), 20)
	var c collect
	var next byte
	r.push(audio(18, 1, 0, 0xA, false, 10, &next), 0, &c)
	r.push(audio(18, 2, 80, 0xA, false, 7, &next), 0, &c) // not 10-byte frames
	r.push(audio(0, 3, 160, 0xA, false, 0, &next), 0, &c) // empty
	bad := audio(0, 4, 160, 0xA, false, 8, &next)
	bad[0] |= 0x0f // 15 CSRCs in 8 bytes
	r.push(bad, 0, &c)
	pad := audio(0, 5, 160, 0xA, false, 8, &next)
	pad[0] |= 0x20
	pad[len(pad)-1] = 200 // more padding than payload
	r.push(pad, 0, &c)
	r.push([]byte{0x80, 0, 0, 6}, 0, &c) // shorter than a header: the leg passes none
	if r.irregular != 5 {
		t.Errorf("irregular = %d, want 5", r.irregular)
	}
	var got []outPkt
	for _, p := range c.pkts {
		got = append(got, parseOut(p))
	}
	want := []outPkt{{1, 0, false, 18, 10}, {2, 80, false, 18, 7}, {3, 160, false, 0, 0}, {4, 160, false, 0, 8}, {5, 160, false, 0, 8}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("out\n got %v\nwant %v", got, want)
	}
}

// A header extension and CSRCs go with the first frame's packet; padding
// does not.
func TestRepackerHeaderKept(t *testing.T) {
	r := newRepacker(testPTs(), 20)
	var c collect
	var next byte
	p := audio(0, 1, 0, 0xA, false, 80+4+8+3, &next)
	p[0] = 0x80 | 0x20 | 0x10 | 1                      // padding, extension, one CSRC
	copy(p[12:], []byte{0, 0, 0, 0xC})                 // the CSRC
	copy(p[16:], []byte{0xbe, 0xde, 0, 1, 1, 2, 3, 4}) // a one-word RFC 8285 extension
	p[len(p)-1] = 3
	r.push(p, 0, &c)
	q := audio(0, 2, 80, 0xA, false, 80, &next)
	r.push(q, 0, &c)
	if len(c.pkts) != 1 {
		t.Fatalf("%d packets out", len(c.pkts))
	}
	out := c.pkts[0]
	if out[0] != 0x80|0x10|1 || !bytes.Equal(out[12:24], p[12:24]) || len(out) != 24+160 ||
		!bytes.Equal(out[24:104], p[24:104]) || !bytes.Equal(out[104:], q[12:]) {
		t.Errorf("out % x", out[:24])
	}
}

// FuzzRepack runs arbitrary packets through a repacker: data is records
// of a length byte and that many packet bytes; target picks the ptime.
// Whatever comes in, the packets out number on one by one, none is larger
// than a datagram, pending audio stays under a packet's worth, and the
// payload bytes out are the payload bytes in.
func FuzzRepack(f *testing.F) {
	var next byte
	seed := func(target uint8, pkts ...[]byte) {
		var b []byte
		for _, p := range pkts {
			b = append(b, byte(len(p)))
			b = append(b, p...)
		}
		f.Add(target, b)
	}
	seed(20, audio(0, 1, 0, 0xA, true, 80, &next), audio(0, 2, 80, 0xA, false, 80, &next), audio(101, 3, 160, 0xA, true, 4, &next))
	seed(10, audio(18, 1, 0, 0xA, true, 30, &next), audio(18, 2, 240, 0xA, false, 22, &next), audio(18, 3, 400, 0xA, false, 7, &next))
	seed(30, audio(8, 9, 0, 0xB, false, 75, &next), audio(0, 10, 75, 0xB, false, 1, &next), audio(13, 11, 76, 0xB, false, 1, &next))
	f.Fuzz(func(t *testing.T, target uint8, data []byte) {
		r := newRepacker(testPTs(), int(target%(maxPtime+1)))
		var c collect
		in := 0
		for len(data) > 0 {
			n := min(int(data[0]), len(data)-1)
			pkt := bytes.Clone(data[1 : 1+n])
			data = data[1+n:]
			if h, end, ok := rtpPayload(pkt); ok {
				in += end - h
			}
			r.push(pkt, 0, &c)
			if limit := r.targetBytes(frameG729) + g729SID; r.n > max(limit, r.targetBytes(frameSample)) {
				t.Fatalf("%d bytes pending, target %d ms", r.n, r.target)
			}
		}
		r.expire(1<<62, &c)
		out := 0
		for i, p := range c.pkts {
			if len(p) < 12 || len(p) > bufSize {
				t.Fatalf("packet out of %d bytes", len(p))
			}
			if i > 0 && binary.BigEndian.Uint16(p[2:]) != binary.BigEndian.Uint16(c.pkts[i-1][2:])+1 {
				t.Fatalf("sequence %d after %d", binary.BigEndian.Uint16(p[2:]), binary.BigEndian.Uint16(c.pkts[i-1][2:]))
			}
			if h, end, ok := rtpPayload(p); ok {
				out += end - h
			}
		}
		if in != out {
			t.Fatalf("%d payload bytes in, %d out", in, out)
		}
	})
}

// TestRepackDecision: which direction re-packetises, to what, after an
// answer: the out leg's profile; else, when the other leg's profile set
// what its peer sends, the out leg's SDP ptime or maxptime; never when
// neither profile has a ptime, nor for SRTP passed through.
func TestRepackDecision(t *testing.T) {
	tests := []struct {
		name             string
		profA, profB     int    // profile ptimes
		sdpA, sdpB       [2]int // the peers' a=ptime, a=maxptime
		pass             bool
		wantToA, wantToB int // targets; 0 = no repacker
		wantOwnRTCP      bool
	}{
		{name: "no profile: transparent whatever the SDPs", sdpA: [2]int{10, 0}, sdpB: [2]int{30, 0}},
		{name: "B at 20, A says 10", profB: 20, sdpA: [2]int{10, 0}, wantToA: 10, wantToB: 20, wantOwnRTCP: true},
		{name: "B at 20, A says 20", profB: 20, sdpA: [2]int{20, 0}, wantToA: 0, wantToB: 0},
		{name: "B at 20, A says nothing: RFC 3551's 20", profB: 20},
		{name: "B at 30, A says nothing", profB: 30, wantToB: 30, wantOwnRTCP: true},
		{name: "B at 60, A's maxptime 40", profB: 60, sdpA: [2]int{0, 40}, wantToA: 40, wantToB: 60, wantOwnRTCP: true},
		{name: "B at 20, A's maxptime 40: 20 fits", profB: 20, sdpA: [2]int{0, 40}},
		{name: "both at 20", profA: 20, profB: 20, sdpA: [2]int{10, 0}, sdpB: [2]int{30, 0}},
		{name: "A at 10, B at 20", profA: 10, profB: 20, wantToA: 10, wantToB: 20, wantOwnRTCP: true},
		{name: "A asks 5 ms: held to 10", profB: 20, sdpA: [2]int{5, 0}, wantToA: 10, wantToB: 20, wantOwnRTCP: true},
		{name: "SRTP passed through", profB: 20, sdpA: [2]int{10, 0}, pass: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &leg{prof: LegProfile{Ptime: tt.profA}, sdpPtime: tt.sdpA[0], sdpMaxptime: tt.sdpA[1]}
			b := &leg{prof: LegProfile{Ptime: tt.profB}, sdpPtime: tt.sdpB[0], sdpMaxptime: tt.sdpB[1]}
			configureRepack(a, b, tt.pass)
			target := func(l *leg) int {
				if l.rp == nil {
					return 0
				}
				return l.rp.target
			}
			if target(a) != tt.wantToA || target(b) != tt.wantToB || a.ownRTCP != tt.wantOwnRTCP || b.ownRTCP != tt.wantOwnRTCP {
				t.Errorf("to A %d, to B %d, own RTCP %v/%v; want %d, %d, %v", target(a), target(b), a.ownRTCP, b.ownRTCP, tt.wantToA, tt.wantToB, tt.wantOwnRTCP)
			}
		})
	}
	// Once a direction re-packetised, a re-INVITE that makes the sides
	// agree leaves it renumbering (target 0): the sequence stays the
	// relay's; SRTP passed through takes it away (the payload is not ours).
	a, b := &leg{sdpPtime: 10}, &leg{prof: LegProfile{Ptime: 20}}
	configureRepack(a, b, false)
	a.sdpPtime = 20
	configureRepack(a, b, false)
	if b.rp == nil || b.rp.target != 0 || a.rp == nil || a.rp.target != 0 || !a.ownRTCP {
		t.Errorf("after the sides agree: to B %+v, to A %+v", b.rp != nil, a.rp != nil)
	}
	configureRepack(a, b, true)
	if a.rp != nil || b.rp != nil || a.ownRTCP {
		t.Error("SRTP passed through still renumbers")
	}
}
