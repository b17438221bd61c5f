package hep

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/umedge/umedge/core/internal/telemetry"
	"github.com/umedge/umedge/core/internal/testutil"
)

var (
	srcAP = netip.MustParseAddrPort("127.0.0.1:5060")
	dstAP = netip.MustParseAddrPort("127.0.0.2:40000")
)

func sipMsg(callID string) []byte {
	return []byte("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: " + callID + "\r\nContent-Length: 0\r\n\r\n")
}

func newSender(t *testing.T, cfg Config) (*Sender, *telemetry.Metrics) {
	t.Helper()
	m := telemetry.NewMetrics()
	s, err := New(cfg, WithMetrics(m), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, m
}

func dropped(m *telemetry.Metrics, reason string) float64 {
	return promtest.ToFloat64(m.HEPDropped.WithLabelValues(reason))
}

// udpCollector is a HEP collector on loopback that decodes what it gets.
func udpCollector(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func readPacket(t *testing.T, pc *net.UDPConn) Packet {
	t.Helper()
	buf := make([]byte, 70000)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := pc.Read(buf)
	if err != nil {
		t.Fatalf("collector got nothing: %v", err)
	}
	p, _, err := Decode(buf[:n])
	if err != nil {
		t.Fatalf("collector cannot decode: %v", err)
	}
	return p
}

func TestSenderUDP(t *testing.T) {
	pc, addr := udpCollector(t)
	s, m := newSender(t, Config{Collector: addr, Network: "udp", AgentID: 7, AuthKey: "secret"})
	before := time.Now()
	msg := sipMsg("call-1")
	s.Capture(UDP, srcAP, dstAP, msg)
	copy(msg, "XXXXXXX") // the caller reuses its buffer at once
	p := readPacket(t, pc)
	if p.Src != srcAP || p.Dst != dstAP || p.Proto != UDP || p.AgentID != 7 || string(p.AuthKey) != "secret" {
		t.Errorf("packet = %+v", p)
	}
	if !bytes.Equal(p.Payload, sipMsg("call-1")) || string(p.CorrelationID) != "call-1" {
		t.Errorf("payload %q, correlation id %q", p.Payload, p.CorrelationID)
	}
	if p.Time.Before(before.Truncate(time.Microsecond)) || p.Time.After(time.Now()) {
		t.Errorf("timestamp %v not the capture time (after %v)", p.Time, before)
	}
	waitFor(t, func() bool { return promtest.ToFloat64(m.HEPSent) == 1 })
}

// TestSenderStreamBatch: a stream batch of several messages gives a HEP
// packet each; keep-alive CRLFs none.
func TestSenderStreamBatch(t *testing.T) {
	pc, addr := udpCollector(t)
	s, _ := newSender(t, Config{Collector: addr, Network: "udp"})
	batch := append(append(append([]byte("\r\n\r\n"), sipMsg("a")...), sipMsg("b")...), "\r\n"...)
	s.Capture(TLS, srcAP, dstAP, batch)
	for _, want := range []string{"a", "b"} {
		p := readPacket(t, pc)
		if string(p.CorrelationID) != want || p.Proto != TLS || !bytes.Equal(p.Payload, sipMsg(want)) {
			t.Errorf("packet %q %d %q, want Call-ID %s", p.CorrelationID, p.Proto, p.Payload, want)
		}
	}
	_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := pc.Read(make([]byte, 100)); err == nil {
		t.Errorf("a third packet of %d bytes: the keep-alive", n)
	}
}

// TestSenderFillsUnspecified: a listener on 0.0.0.0 is reported with the
// address the kernel sends to the peer from.
func TestSenderFillsUnspecified(t *testing.T) {
	pc, addr := udpCollector(t)
	s, _ := newSender(t, Config{Collector: addr, Network: "udp"})
	s.Capture(UDP, netip.MustParseAddrPort("0.0.0.0:5060"), netip.MustParseAddrPort("127.0.0.1:7000"), sipMsg("u"))
	p := readPacket(t, pc)
	if p.Src.String() != "127.0.0.1:5060" {
		t.Errorf("source %s, want 127.0.0.1:5060", p.Src)
	}
}

func TestSenderTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, m := newSender(t, Config{Collector: ln.Addr().(*net.TCPAddr).AddrPort(), Network: "tcp", AgentID: 3})
	const n = 200
	for i := range n {
		s.Capture(TCP, srcAP, dstAP, sipMsg(fmt.Sprint(i)))
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf []byte
	tmp := make([]byte, 65536)
	for got := 0; got < n; {
		k, err := c.Read(tmp)
		if err != nil {
			t.Fatalf("after %d packets: %v", got, err)
		}
		buf = append(buf, tmp[:k]...)
		for {
			p, used, err := Decode(buf)
			if err != nil {
				break // the rest is still to come
			}
			if want := fmt.Sprint(got); string(p.CorrelationID) != want {
				t.Fatalf("packet %d has Call-ID %q: out of order or lost", got, p.CorrelationID)
			}
			buf, got = buf[used:], got+1
		}
	}
	waitFor(t, func() bool { return promtest.ToFloat64(m.HEPSent) == n })
}

// TestSenderQueueFull: a full queue drops and counts; Capture does not
// wait. The sender's goroutine is not running here, so nothing drains.
func TestSenderQueueFull(t *testing.T) {
	s, m := idleSender(16, 1<<30)
	start := time.Now()
	for range 10000 {
		s.Capture(TCP, srcAP, dstAP, sipMsg("q"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("10,000 captures took %v", d)
	}
	if len(s.queue) != 16 || dropped(m, dropQueueFull) != 10000-16 {
		t.Errorf("queued %d, dropped %v; want 16 and 9,984", len(s.queue), dropped(m, dropQueueFull))
	}
}

// idleSender is a Sender without its goroutine.
func idleSender(slots int, maxBytes int64) (*Sender, *telemetry.Metrics) {
	s := &Sender{maxBytes: maxBytes, queue: make(chan item, slots)}
	s.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	m := telemetry.NewMetrics()
	s.drops = map[string]prometheus.Counter{dropQueueFull: m.HEPDropped.WithLabelValues(dropQueueFull)}
	return s, m
}

// TestSenderByteBudget: large messages fill the byte bound before the slots.
func TestSenderByteBudget(t *testing.T) {
	s, m := idleSender(1000, 10*slotBytes)
	big := make([]byte, 30000)
	for range 5 {
		s.Capture(UDP, srcAP, dstAP, big)
	}
	if len(s.queue) != 1 || dropped(m, dropQueueFull) != 4 {
		t.Errorf("queued %d, dropped %v; want 1 and 4", len(s.queue), dropped(m, dropQueueFull))
	}
}

// TestSenderDeadCollector: nobody listens on the TCP port; captures are
// dropped as collector-down, with a reconnect backoff, not a dial per message.
func TestSenderDeadCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	_ = ln.Close()
	s, m := newSender(t, Config{Collector: addr, Network: "tcp"})
	for i := range 50 {
		s.Capture(TCP, srcAP, dstAP, sipMsg(fmt.Sprint(i)))
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { return dropped(m, dropDown) == 50 })
	if promtest.ToFloat64(m.HEPSent) != 0 {
		t.Error("sent to a dead collector")
	}
}

// TestSenderUDPRefused: ICMP port unreachable shows as send errors.
func TestSenderUDPRefused(t *testing.T) {
	pc, addr := udpCollector(t)
	_ = pc.Close()
	s, m := newSender(t, Config{Collector: addr, Network: "udp"})
	for range 20 {
		s.Capture(UDP, srcAP, dstAP, sipMsg("r"))
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, func() bool { return dropped(m, dropSendError)+promtest.ToFloat64(m.HEPSent) == 20 })
	if dropped(m, dropSendError) == 0 {
		t.Error("no send error counted towards a closed port")
	}
}

// TestSenderSlowTCPCollector: a collector that accepts and never reads.
// Capture keeps returning at once, the drops are counted, and the memory
// held stays bounded by the queue.
func TestSenderSlowTCPCollector(t *testing.T) {
	// Restored after the sender has stopped (cleanups run last in, first out).
	w := writeTimeout
	t.Cleanup(func() { writeTimeout = w })
	writeTimeout = time.Second
	s, m := newSender(t, Config{Collector: testutil.NeverReads(t), Network: "tcp", Queue: 1024})
	msg := append(sipMsg("slow"), bytes.Repeat([]byte("x"), 1000)...)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var worst time.Duration
	deadline := time.Now().Add(2 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		t0 := time.Now()
		s.Capture(TCP, srcAP, dstAP, msg)
		worst = max(worst, time.Since(t0))
		n++
		if n%1000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	// A Capture that waited for the collector would take the write
	// timeout; what is left is scheduling on a loaded machine.
	if worst >= writeTimeout/2 {
		t.Errorf("slowest Capture took %v", worst)
	}
	if n < 10000 {
		t.Errorf("only %d captures in 2 s", n)
	}
	if d := dropped(m, dropQueueFull) + dropped(m, dropSendError); d == 0 {
		t.Errorf("%d captures to a collector that does not read, none dropped", n)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 32<<20 {
		t.Errorf("heap grew by %d MiB", grown>>20)
	}
	t.Logf("%d captures, sent %v, dropped queue-full %v send-error %v collector-down %v, slowest %v", n,
		promtest.ToFloat64(m.HEPSent), dropped(m, dropQueueFull), dropped(m, dropSendError), dropped(m, dropDown), worst)
}

func TestCaptureAllocs(t *testing.T) {
	pc, addr := udpCollector(t)
	go func() { // a collector that keeps up
		buf := make([]byte, 70000)
		for {
			if _, err := pc.Read(buf); err != nil {
				return
			}
		}
	}()
	s, _ := newSender(t, Config{Collector: addr, Network: "udp"})
	msg := sipMsg("alloc")
	for range 100 { // warm the pool
		s.Capture(UDP, srcAP, dstAP, msg)
	}
	time.Sleep(50 * time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		s.Capture(UDP, srcAP, dstAP, msg)
		time.Sleep(10 * time.Microsecond) // let the sender keep the pool full
	})
	if allocs > 0.1 {
		t.Errorf("Capture allocates %.2f per message, want 0", allocs)
	}
}

func TestSenderClose(t *testing.T) {
	pc, addr := udpCollector(t)
	s, _ := newSender(t, Config{Collector: addr, Network: "udp"})
	s.Capture(UDP, srcAP, dstAP, sipMsg("last"))
	_ = s.Close()
	if p := readPacket(t, pc); string(p.CorrelationID) != "last" {
		t.Errorf("queued message lost at Close: %q", p.CorrelationID)
	}
	s.Capture(UDP, srcAP, dstAP, sipMsg("after")) // no panic, nothing sent
	_ = s.Close()
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{Collector: srcAP, Network: "sctp"}); err == nil {
		t.Error("sctp accepted")
	}
	if _, err := New(Config{Network: "udp"}); err == nil {
		t.Error("no collector accepted")
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name, give, want string
		wantErr          bool
	}{
		{name: "ipv4", give: "127.0.0.1:9060", want: "127.0.0.1:9060"},
		{name: "ipv6", give: "[::1]:9061", want: "[::1]:9061"},
		{name: "localhost", give: "localhost:9060", want: ":9060"},
		{name: "no port", give: "127.0.0.1", wantErr: true},
		{name: "bad port", give: "127.0.0.1:99999", wantErr: true},
		{name: "unknown host", give: "no-such-host.invalid:9060", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(t.Context(), tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve = %v, %v", got, err)
			}
			if err == nil && !bytes.HasSuffix([]byte(got.String()), []byte(tt.want)) {
				t.Errorf("Resolve = %s, want %s", got, tt.want)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5 s")
}
