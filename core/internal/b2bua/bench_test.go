package b2bua

import (
	"bytes"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// BenchmarkCall runs one whole call through the engine per op, as the
// bench-b2bua load places it: a UDP caller's INVITE with SDP (100 Trying
// and leg B's INVITE out), the back end's 200 with SDP (our 200 to the
// caller), the caller's ACK (leg B's ACK), the caller's BYE (200 to the
// caller, BYE to the back end) and the back end's 200 to it; CDRs on. The
// five messages in are parsed by sipgo as the front parses them; sockets
// and media are stand-ins that cost nothing. Ended calls stay in the
// engine for their 64×T1, as they do under load.
func BenchmarkCall(b *testing.B) {
	e, call := benchEngine(b)
	defer e.Shutdown(0)
	b.ReportAllocs()
	cpu0, gc0 := cpuTime(b), gcCPU()
	i := 0
	for b.Loop() {
		i++
		call(i, benchHangUp)
	}
	// The machine these run on is shared: wall time per op says more
	// about the neighbours than about the engine. The process's CPU time
	// (GC workers and the CDR writer included) is the cost; of it, the
	// collector's as the runtime counts it.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(i), "cpu-ns/op")
	b.ReportMetric((gcCPU()-gc0)*1e9/float64(i), "gc-cpu-ns/op")
}

// BenchmarkCallMemory reports the heap one call holds while it is up
// (INVITE, 200, ACK) and once it has ended (BYE, 200) and waits out its
// 64×T1: live heap after a full collection, per call, over 5,000 calls.
func BenchmarkCallMemory(b *testing.B) {
	const n = 5000
	for b.Loop() {
		e, call := benchEngine(b)
		base := liveHeap()
		for i := range n {
			call(i, benchUp)
		}
		up := liveHeap()
		for i := range n {
			call(i+n, benchHangUp)
		}
		all := liveHeap()
		b.ReportMetric(float64(up-base)/n, "B/active-call")
		b.ReportMetric(float64(all-up)/n, "B/ended-call")
		e.Shutdown(0)
	}
}

// BenchmarkEndedCallMemory reports what one ended call costs while it
// waits out its 64×T1 (32 s at the default T1), once it has settled (its
// last exchange done, T1 after its end): live heap and heap objects after
// a full collection, per call, over 10,000 calls through the engine. The
// objects are what the collector marks on every cycle.
func BenchmarkEndedCallMemory(b *testing.B) { endedCallMemory(b, benchHangUp) }

// BenchmarkRefusedCallMemory is BenchmarkEndedCallMemory for calls the
// back end refuses (486, ACKed both ways): what a flood of failing calls
// holds for their 64×T1.
func BenchmarkRefusedCallMemory(b *testing.B) { endedCallMemory(b, benchRefused) }

func endedCallMemory(b *testing.B, end benchEnd) {
	b.Helper()
	const n = 10000
	for b.Loop() {
		e, call := benchEngine(b)
		base, baseObjs := liveHeapObjects()
		for i := range n {
			call(i, end)
		}
		time.Sleep(e.cfg.T1 + 5*forgetBatch)
		all, allObjs := liveHeapObjects()
		b.ReportMetric(float64(all-base)/n, "B/ended-call")
		b.ReportMetric(float64(allObjs-baseObjs)/n, "objects/ended-call")
		e.Shutdown(0)
	}
}

func liveHeapObjects() (bytes, objects uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.HeapObjects
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// How a call of benchEngine goes.
type benchEnd int

const (
	benchUp      benchEnd = iota // answered, up to the caller's ACK
	benchHangUp                  // then through the caller's BYE and its 200
	benchRefused                 // the back end answers 486; the caller ACKs our 486
)

// benchEngine returns an engine and a function that places call i, as
// end says.
func benchEngine(b *testing.B) (*Engine, func(i int, end benchEnd)) {
	b.Helper()
	out := &lastSent{}
	w, err := OpenCDR(filepath.Join(b.TempDir(), "cdr.jsonl"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{FQDN: "sbc.example.net"}, benchTransport{out}, benchMedia{}, w, slog.New(slog.DiscardHandler))
	be := &router.Backend{Name: "um1", Host: "203.0.113.5", UDPPort: 5062}
	caller := netip.MustParseAddrPort("192.0.2.10:5060")
	inA := Inbound{Transport: router.UDP, Source: caller, Local: frontAddr, Reply: out.to(sideA), Requests: out.to(sideA)}
	inB := Inbound{Transport: router.UDP, Source: netip.AddrPortFrom(netip.MustParseAddr(be.Host), 5062), Local: frontAddr,
		Reply: out.to(sideB), Requests: out.to(sideB)}
	p := sip.NewParser()
	parse := func(m []byte) sip.Message {
		msg, err := p.ParseSIP(m)
		if err != nil {
			b.Fatalf("parse: %v\n%s", err, m)
		}
		return msg
	}
	sdp := []byte("v=0\r\no=gw 7 7 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
	return e, func(i int, end benchEnd) {
		id := "bench-" + strconv.Itoa(i)
		t := Target{Gateway: "gw", DialPlan: "dp", Pool: "um", User: "1001", Backend: be,
			Call: &router.Call{Diversion: []router.Diversion{{User: "1001", Reason: "no-answer"}}}}
		inv := parse(callerInvite(id, sdp))
		e.Invite(inv.(*sip.Request), inA, t)
		if end == benchRefused {
			if !e.Handle(parse(answerTo(out.last[sideB], 486, "Busy Here", "be1", nil)), inB) {
				b.Fatal("486 not taken")
			}
			if !bytes.HasPrefix(out.last[sideA], []byte("SIP/2.0 486 ")) {
				b.Fatalf("no 486 to the caller:\n%s", out.last[sideA])
			}
			ack := benchRequest(id, "ACK", 1, header(out.last[sideA], "To: "))
			ack = bytes.Replace(ack, []byte("z9hG4bK-"+id+"-ACK;"), []byte("z9hG4bK-"+id+";"), 1) // the INVITE's transaction
			if !e.Handle(parse(ack), inA) {
				b.Fatal("ACK not taken")
			}
			return
		}
		if !e.Handle(parse(answerTo(out.last[sideB], 200, "OK", "be1", sdp)), inB) {
			b.Fatal("200 not taken")
		}
		toA := header(out.last[sideA], "To: ")
		if !e.Handle(parse(benchRequest(id, "ACK", 1, toA)), inA) {
			b.Fatal("ACK not taken")
		}
		if end == benchUp {
			return
		}
		if !e.Handle(parse(benchRequest(id, "BYE", 2, toA)), inA) {
			b.Fatal("BYE not taken")
		}
		if !bytes.HasPrefix(out.last[sideB], []byte("BYE ")) {
			b.Fatalf("no BYE to the back end:\n%s", out.last[sideB])
		}
		if !e.Handle(parse(answerTo(out.last[sideB], 200, "OK", "", nil)), inB) {
			b.Fatal("200 to BYE not taken")
		}
	}
}

// gcCPU is the CPU time the collector has used, in seconds, as the
// runtime estimates it.
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const (
	sideA = 0
	sideB = 1
)

// lastSent keeps the last message sent to each side.
type lastSent struct {
	mu   sync.Mutex
	last [2][]byte
}

type lastSender struct {
	l    *lastSent
	side int
}

func (l *lastSent) to(side int) lastSender { return lastSender{l, side} }

func (s lastSender) Send(b []byte) {
	s.l.mu.Lock()
	s.l.last[s.side] = b
	s.l.mu.Unlock()
}

type benchTransport struct{ l *lastSent }

func (t benchTransport) Send(_ router.Transport, _ netip.AddrPort, _ string, msg []byte) error {
	t.l.to(sideB).Send(msg)
	return nil
}

func (benchTransport) Local(router.Transport, netip.Addr) (netip.AddrPort, error) {
	return frontAddr, nil
}

func (benchTransport) Resolve(host string) (netip.Addr, error) { return netip.ParseAddr(host) }

// benchMedia passes SDP through unchanged.
type benchMedia struct{}

func (benchMedia) NewSession(string, *Target, netip.Addr, netip.Addr, func()) (MediaSession, error) {
	return benchSession{}, nil
}

type benchSession struct{}

func (benchSession) Offer(_ Side, sdp []byte) ([]byte, error)  { return sdp, nil }
func (benchSession) Answer(_ Side, sdp []byte) ([]byte, error) { return sdp, nil }
func (benchSession) Reject(Side)                               {}
func (benchSession) Close()                                    {}
func (benchSession) Stats() any                                { return nil }

func callerInvite(id string, sdp []byte) []byte {
	return append([]byte("INVITE sip:80000@198.51.100.1:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-"+id+";rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: \"Caller\" <sip:2001@192.0.2.10:5060>;tag="+id+"\r\n"+
		"To: <sip:80000@198.51.100.1:5060>\r\n"+
		"Call-ID: "+id+"\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:2001@192.0.2.10:5060>\r\n"+
		"Diversion: <sip:1001@192.0.2.10>;reason=no-answer\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: "+strconv.Itoa(len(sdp))+"\r\n\r\n"), sdp...)
}

func benchRequest(id, method string, cseq int, to string) []byte {
	return []byte(method + " sip:80000@198.51.100.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-" + id + "-" + method + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: \"Caller\" <sip:2001@192.0.2.10:5060>;tag=" + id + "\r\n" +
		to + "\r\n" +
		"Call-ID: " + id + "\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// answerTo writes the back end's answer to req (our request, as sent):
// its Via, From, To (with toTag), Call-ID and CSeq.
func answerTo(req []byte, code int, reason, toTag string, sdp []byte) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	for _, name := range []string{"Via: ", "From: ", "To: ", "Call-ID: ", "CSeq: "} {
		b.WriteString(header(req, name))
		if name == "To: " && toTag != "" {
			b.WriteString(";tag=" + toTag)
		}
		b.WriteString("\r\n")
	}
	b.WriteString("Contact: <sip:1001@203.0.113.5:5062>\r\n")
	if len(sdp) > 0 {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n")
	b.Write(sdp)
	return b.Bytes()
}

// header is the whole line of msg's first header that starts with name.
func header(msg []byte, name string) string {
	i := bytes.Index(msg, []byte("\r\n"+name))
	if i < 0 {
		return ""
	}
	line := msg[i+2:]
	return string(line[:bytes.Index(line, []byte("\r\n"))])
}
