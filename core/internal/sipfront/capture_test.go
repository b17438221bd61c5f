package sipfront

import (
	"bufio"
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/hep"
	"github.com/umedge/umedge/core/internal/testutil"
)

// collector is a HEP collector on loopback.
type collector struct {
	pc   *net.UDPConn
	addr netip.AddrPort
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return &collector{pc: pc, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (c *collector) next(t *testing.T) hep.Packet {
	t.Helper()
	buf := make([]byte, 70000)
	_ = c.pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.pc.Read(buf)
	if err != nil {
		t.Fatalf("collector got nothing: %v", err)
	}
	p, _, err := hep.Decode(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func captureTo(t *testing.T, s *Server, c *collector) {
	t.Helper()
	h, err := hep.New(hep.Config{Collector: c.addr, Network: "udp", AgentID: 42}, hep.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if old := s.SetCapture(h); old != nil {
		t.Fatal("capture was on already")
	}
	t.Cleanup(func() { _ = s.SetCapture(nil).Close() })
}

// TestCaptureBothWays: over UDP, TCP and TLS the collector gets each
// request as received and each answer as sent, byte for byte, with the
// addresses and transport they travelled with; TLS in clear.
func TestCaptureBothWays(t *testing.T) {
	pki, err := devpki.Write(t.TempDir(), "edge.test", "gw.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{"UDP", "TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			s, port := startWith(t, &fakeRouter{}, func(c *Config) {
				if tp == "TLS" {
					c.TLS, c.TLSConfig = true, serverTLS(t, pki)
				}
			})
			col := newCollector(t)
			captureTo(t, s, col)
			if tp == "TLS" {
				port++
			}
			var (
				conn net.Conn
				raw  net.Conn
			)
			if tp == "UDP" {
				conn = dialUDP(t, port)
				raw = conn
			} else {
				raw = dialFrom(t, "127.0.0.1", "127.0.0.1", port)
				conn = raw
				if tp == "TLS" {
					conn = clientTLS(t, raw, pki)
				}
			}
			defer conn.Close()
			req := optionsOver(tp)
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			answer := readResponse(t, bufio.NewReader(conn))
			client := netip.MustParseAddrPort(raw.LocalAddr().String())
			server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			wantProto := map[string]hep.Proto{"UDP": hep.UDP, "TCP": hep.TCP, "TLS": hep.TLS}[tp]

			in, out := col.next(t), col.next(t)
			if string(in.Payload) != req || in.Src != client || in.Dst != server || in.Proto != wantProto {
				t.Errorf("received capture %s -> %s proto %d %q, want %s -> %s %d %q",
					in.Src, in.Dst, in.Proto, in.Payload, client, server, wantProto, req)
			}
			if string(out.Payload) != answer || out.Src != server || out.Dst != client || out.Proto != wantProto {
				t.Errorf("sent capture %s -> %s proto %d %q, want %s -> %s %d %q",
					out.Src, out.Dst, out.Proto, out.Payload, server, client, wantProto, answer)
			}
			if string(in.CorrelationID) != "a84b4c76e66710@pc33" || in.AgentID != 42 {
				t.Errorf("correlation id %q, agent %d", in.CorrelationID, in.AgentID)
			}
		})
	}
}

// TestCaptureOff: without a sender nothing is captured, and setting one
// nil again turns capture off.
func TestCaptureOff(t *testing.T) {
	s, port := startWith(t, &fakeRouter{}, nil)
	col := newCollector(t)
	captureTo(t, s, col)
	_ = s.SetCapture(nil).Close()
	if statusOf(exchangeUDP(t, port, []byte(optionsOver("UDP")), 2*time.Second)) != 200 {
		t.Fatal("no answer")
	}
	_ = col.pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := col.pc.Read(make([]byte, 2000)); err == nil {
		t.Errorf("captured %d bytes with capture off", n)
	}
}

// TestCaptureToDeadCollectorKeepsAnswering: a flood of requests while the
// collector does not exist or does not read (a UDP port nobody listens
// on, a UDP socket that never reads, a TCP one that accepts and never
// reads): every request still gets its answer, and what capture could not
// send is counted (the kernel drops a blackhole's silently: no count).
func TestCaptureToDeadCollectorKeepsAnswering(t *testing.T) {
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = dead.Close()
	// A blackhole: bound, never read, its receive buffer soon full.
	hole, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	_ = hole.SetReadBuffer(4096)
	slow := testutil.NeverReads(t)
	for _, tt := range []struct {
		name, network string
		addr          netip.AddrPort
	}{
		{"udp nobody listens", "udp", deadAddr},
		{"udp blackhole", "udp", hole.LocalAddr().(*net.UDPAddr).AddrPort()},
		{"tcp never reads", "tcp", slow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, port := startWith(t, &fakeRouter{}, nil)
			h, err := hep.New(hep.Config{Collector: tt.addr, Network: tt.network, Queue: 64},
				hep.WithLogger(slog.New(slog.DiscardHandler)), hep.WithMetrics(s.metrics))
			if err != nil {
				t.Fatal(err)
			}
			s.SetCapture(h)
			defer func() { _ = s.SetCapture(nil).Close() }()
			c := dialUDP(t, port)
			defer c.Close()
			const n = 2000
			got := 0
			buf := make([]byte, 4096)
			start := time.Now()
			for i := range n {
				req := strings.Replace(optionsOver("UDP"), "a84b4c76e66710@pc33", "flood-"+strconv.Itoa(i), 1)
				if _, err := c.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, err := c.Read(buf)
				if err != nil {
					t.Fatalf("request %d unanswered: %v", i, err)
				}
				if bytes.HasPrefix(buf[:k], []byte("SIP/2.0 200")) {
					got++
				}
			}
			if got != n {
				t.Errorf("%d of %d requests answered", got, n)
			}
			dropped := 0.0
			for _, r := range []string{"queue-full", "collector-down", "send-error"} {
				dropped += droppedCaptures(s, r)
			}
			if tt.network == "udp" && dropped == 0 {
				t.Error("no drop counted towards a closed port")
			}
			t.Logf("%d requests answered in %v; captures dropped %v", n, time.Since(start), dropped)
		})
	}
}

func droppedCaptures(s *Server, reason string) float64 {
	return promtest.ToFloat64(s.metrics.HEPDropped.WithLabelValues(reason))
}
