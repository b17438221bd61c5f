package hep

import (
	"log/slog"
	"net"
	"testing"
)

// BenchmarkCapture is what a SIP reader or writer pays per message with
// capture on: the copy into the queue. The sender drains to a collector
// on loopback that reads everything.
func BenchmarkCapture(b *testing.B) {
	s, pc := benchSender(b)
	defer pc.Close()
	defer s.Close()
	msg := sipMsg("bench-call-id@host")
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s.Capture(UDP, srcAP, dstAP, msg)
	}
}

// BenchmarkEncode is the sender's work per message: the HEP encoding with
// the Call-ID found.
func BenchmarkEncode(b *testing.B) {
	msg := sipMsg("bench-call-id@host")
	p := Packet{Proto: UDP, Src: srcAP, Dst: dstAP, AgentID: 1}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		p.Payload, p.CorrelationID = msg, callID(msg)
		var err error
		if buf, err = Append(buf[:0], &p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSender(b *testing.B) (*Sender, *net.UDPConn) {
	b.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		buf := make([]byte, 70000)
		for {
			if _, err := pc.Read(buf); err != nil {
				return
			}
		}
	}()
	s, err := New(Config{Collector: pc.LocalAddr().(*net.UDPAddr).AddrPort(), Network: "udp"},
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	return s, pc
}
