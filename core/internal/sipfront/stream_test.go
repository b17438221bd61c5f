package sipfront

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/umedge/umedge/core/internal/devpki"
)

// startWith starts a front end with UDP and TCP on a free port of each
// address in listen (127.0.0.1 when none), with mut applied to the config.
func startWith(t *testing.T, r Router, mut func(*Config), listen ...string) (*Server, int) {
	t.Helper()
	if len(listen) == 0 {
		listen = []string{"127.0.0.1"}
	}
	var addrs []netip.Addr
	for _, a := range listen {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	for range 20 {
		// Every loopback source is a configured peer here; the room kept
		// for peers against strangers is TestConnTableKeepsRoomForPeers's.
		s := New(r, WithLogger(slog.New(slog.DiscardHandler)), WithKnownSource(netip.Addr.IsLoopback))
		port := freePort(t)
		cfg := Config{
			Listen: addrs, UDP: true, TCP: true, TCPPort: port, TLSPort: port + 1,
			IdleTimeout: time.Minute, RetryAfter: 30 * time.Second, FQDN: "edge.test",
		}
		if mut != nil {
			mut(&cfg)
		}
		if err := s.Apply(cfg); err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s, port
		}
		_ = s.Close()
	}
	t.Fatal("no free port")
	return nil, 0
}

// optionsOver is an OPTIONS request with a Via for transport tp.
func optionsOver(tp string) string {
	return strings.NewReplacer("INVITE sip:1001", "OPTIONS sip:1001", "314159 INVITE", "1 OPTIONS",
		"SIP/2.0/UDP", "SIP/2.0/"+tp).Replace(invite(""))
}

// dialFrom opens a TCP connection from the loopback address src.
func dialFrom(t *testing.T, src, dst string, port int) net.Conn {
	t.Helper()
	c, err := tryDial(src, dst, port)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, src, err)
	}
	return c
}

func tryDial(src, dst string, port int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
}

// refusedAtOnce reports whether a connection from src is refused: reset
// before the dial returns, or answered with nothing.
func refusedAtOnce(t *testing.T, src, dst string, port int) bool {
	t.Helper()
	c, err := tryDial(src, dst, port)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s from %s: %v, want success or a reset", dst, src, err)
		}
		return true
	}
	defer c.Close()
	return !answered(t, c, time.Second)
}

// answered sends OPTIONS on c and reports whether a 200 came back within
// wait; a connection the server refused gets no answer.
func answered(t *testing.T, c net.Conn, wait time.Duration) bool {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(optionsOver("TCP"))); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && statusOf(line) == 200
}

// eventually polls cond every 10 ms until it holds or within has passed.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestStreamConnectionLimits(t *testing.T) {
	tests := []struct {
		name        string
		perSource   int
		total       int
		first       []string // sources opening connections that must be answered, in order
		refusedFrom string   // the next source, which must be refused
		wantReason  string
	}{
		{name: "per source", perSource: 2, total: 100,
			first: []string{"127.0.0.5", "127.0.0.5", "127.0.0.6"}, refusedFrom: "127.0.0.5", wantReason: refusedPerSource},
		{name: "global across listeners", perSource: 64, total: 3,
			first: []string{"127.0.0.5", "127.0.0.6", "127.0.0.7"}, refusedFrom: "127.0.0.8", wantReason: refusedGlobal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two TCP listeners: the global limit counts both.
			s, port := startWith(t, &fakeRouter{}, func(c *Config) {
				c.MaxConnectionsPerSource, c.MaxConnections = tt.perSource, tt.total
			}, "127.0.0.1", "127.0.0.9")
			dsts := []string{"127.0.0.1", "127.0.0.9"}
			var open []net.Conn
			defer func() {
				for _, c := range open {
					_ = c.Close()
				}
			}()
			for i, src := range tt.first {
				c := dialFrom(t, src, dsts[i%2], port)
				open = append(open, c)
				if !answered(t, c, 2*time.Second) {
					t.Fatalf("connection %d from %s got no answer", i, src)
				}
			}
			if !refusedAtOnce(t, tt.refusedFrom, dsts[1], port) {
				t.Fatalf("connection from %s over the limit was answered", tt.refusedFrom)
			}
			if got := testutil.ToFloat64(s.metrics.SIPConnsRefused.WithLabelValues(tt.wantReason)); got != 1 {
				t.Errorf("refused{reason=%q} = %v, want 1", tt.wantReason, got)
			}
			// A closed connection frees its place.
			_ = open[0].Close()
			open = open[1:]
			if !eventually(2*time.Second, func() bool { return s.conns.open() == len(open) }) {
				t.Fatalf("open = %d after a close, want %d", s.conns.open(), len(open))
			}
			again := dialFrom(t, tt.refusedFrom, dsts[0], port)
			open = append(open, again)
			if !answered(t, again, 2*time.Second) {
				t.Errorf("connection after a place was freed got no answer")
			}
		})
	}
}

// TestPeerThatStopsReadingIsDropped: a peer that sends 1,000 OPTIONS and
// reads none of the answers is disconnected within the write timeout, and
// the goroutines that served it are gone; over TCP and over TLS.
func TestPeerThatStopsReadingIsDropped(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	// A peer whose receive window stays shut can stall the connection both
	// ways with our answers in the kernel rather than in a write of ours
	// (seen under load): then TCP_USER_TIMEOUT ends it, not the write
	// deadline. Shorten it to the write timeout here.
	defer func(d time.Duration) { minUserTimeout = d }(minUserTimeout)
	minUserTimeout = writeTimeout
	pki, err := devpki.Write(t.TempDir(), "edge.test", "gw.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{"TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			s, port := startWith(t, &fakeRouter{}, func(c *Config) {
				c.WriteTimeout = writeTimeout
				if tp == "TLS" {
					c.TLS, c.TLSConfig = true, serverTLS(t, pki)
				}
			})
			before := runtime.NumGoroutine()

			if tp == "TLS" {
				port++
			}
			raw := dialFrom(t, "127.0.0.1", "127.0.0.1", port)
			defer raw.Close()
			// A small receive window, so that the kernel cannot absorb the answers.
			if err := raw.(*net.TCPConn).SetReadBuffer(4096); err != nil {
				t.Fatal(err)
			}
			c := raw
			if tp == "TLS" {
				c = clientTLS(t, raw, pki)
			}
			if !eventually(2*time.Second, func() bool { return s.conns.open() == 1 }) {
				t.Fatal("connection not accepted")
			}
			req := []byte(optionsOver(tp))
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			sent := 0
			// More answers than the kernel's send buffer and the send
			// queue hold together (~4 MB of 200s, twice what they take).
			for range 12000 {
				if _, err := c.Write(req); err != nil {
					break // the server may drop us before we are through
				}
				sent++
			}
			done := time.Now()
			if !eventually(writeTimeout+2*time.Second, func() bool { return s.conns.open() == 0 }) {
				t.Fatalf("connection still open %v after %d OPTIONS were sent and none read", time.Since(done), sent)
			}
			t.Logf("dropped %v after %d OPTIONS", time.Since(done).Round(time.Millisecond), sent)
			// Which way it shows depends on where the answers piled up: in
			// the send queue, in a write, or in the kernel.
			var dropped float64
			for _, reason := range []string{dropQueueFull, dropWriteTimeout, dropTCPTimeout} {
				dropped += testutil.ToFloat64(s.metrics.SIPConnsDropped.WithLabelValues(reason))
			}
			if dropped != 1 {
				t.Errorf("dropped connections = %v, want 1", dropped)
			}
			if !eventually(2*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines, %d before the peer connected:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			// The peer sees the end: whatever it reads, the stream then ends.
			// What the kernel already held still trickles out (zero-window
			// probes back off), then the stream ends: allow 10 s for it.
			_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, raw)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("reading after the drop: %v, want the connection closed", err)
			}
		})
	}
}

// serverTLS is the mutual-TLS config of a test listener: pki's server
// certificate, clients verified against pki's CA.
func serverTLS(t *testing.T, pki devpki.Files) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: certPool(t, pki.CA), MinVersion: tls.VersionTLS12}
}

// clientTLS runs a TLS handshake over raw as pki's gateway gw.test.
func clientTLS(t *testing.T, raw net.Conn, pki devpki.Files) *tls.Conn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.Clients["gw.test"].Cert, pki.Clients["gw.test"].Key)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: certPool(t, pki.CA),
		ServerName: "edge.test", MinVersion: tls.VersionTLS12})
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c
}

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return pool
}

// TestHeaderEndInItsOwnSegment: the empty line that ends the headers,
// arriving alone, is the end of the message, not a keep-alive.
func TestHeaderEndInItsOwnSegment(t *testing.T) {
	_, port := startWith(t, &fakeRouter{}, nil)
	c := dialFrom(t, "127.0.0.1", "127.0.0.1", port)
	defer c.Close()
	inv := strings.Replace(invite(""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	head, end := inv[:len(inv)-2], inv[len(inv)-2:]
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // two reads on the server
	if _, err := c.Write([]byte(end)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if resp := readResponse(t, bufio.NewReader(c)); statusOf(resp) != 302 {
		t.Errorf("answer = %q, want 302", firstLine(resp))
	}
}

// A peer that reads slower than it sends (a trunk whose box, or ours, is
// overloaded) is slowed down by TCP's flow control, not dropped: its reader
// stops reading while half the send queue waits, so the queue never
// overflows; every request gets its answer once the peer reads again.
func TestSlowReaderIsSlowedNotDropped(t *testing.T) {
	s, port := startWith(t, &fakeRouter{}, func(c *Config) { c.WriteTimeout = 2 * time.Second })
	raw := dialFrom(t, "127.0.0.1", "127.0.0.1", port)
	defer raw.Close()
	// A fixed window (no autotuning), so the kernel takes only ~100 KB of
	// the answers while the peer does not read.
	if err := raw.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	const n = 12000 // ~4 MB of 200s: four times the send queue
	req := []byte(optionsOver("TCP"))
	go func() {
		for range n {
			if _, err := raw.Write(req); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // not reading, well inside the write timeout
	_ = raw.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, buf, tail := 0, make([]byte, 64<<10), []byte(nil)
	for got < n {
		k, err := raw.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d answers, then %v (drops: queue-full %v, write-timeout %v)", got, n, err,
				testutil.ToFloat64(s.metrics.SIPConnsDropped.WithLabelValues(dropQueueFull)),
				testutil.ToFloat64(s.metrics.SIPConnsDropped.WithLabelValues(dropWriteTimeout)))
		}
		pat := []byte("SIP/2.0 200 ")
		data := append(tail, buf[:k]...)
		got += bytes.Count(data, pat) // a match lies in the new bytes, at least its end: the tail is shorter than it
		tail = append(tail[:0:0], data[max(0, len(data)-len(pat)+1):]...)
	}
}
