package health

import (
	"github.com/umedge/umedge/core/internal/testutil"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Test helpers: real sipgo OPTIONS responders on 127.0.0.1, silent
// listeners, log capture and polling.

var quiet = slog.New(slog.DiscardHandler)

func TestMain(m *testing.M) {
	// sipgo logs connection bookkeeping (for example "TCP ref went
	// negative" when a user agent closes a live connection) through its
	// package-wide logger; keep test output readable.
	sip.SetDefaultLogger(quiet)
	os.Exit(m.Run())
}

// sipServer answers OPTIONS with a status code the test can change.
type sipServer struct {
	addr string
	stop func() // closes the listener and the user agent; idempotent
	code atomic.Int32
	hits atomic.Int64

	mu   sync.Mutex
	reqs []*sip.Request
}

func (s *sipServer) setCode(code int) { s.code.Store(int32(code)) }

func (s *sipServer) requests() []*sip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*sip.Request(nil), s.reqs...)
}

// startSIPServer serves OPTIONS on network ("udp", "tcp" or "tls") on
// 127.0.0.1 until the test ends. serverTLS is used only for "tls".
func startSIPServer(t *testing.T, network string, code int, serverTLS *tls.Config) *sipServer {
	t.Helper()
	return startSIPServerAt(t, network, "127.0.0.1:0", code, serverTLS)
}

// startSIPServerAt is startSIPServer on a given local address.
func startSIPServerAt(t *testing.T, network, addr string, code int, serverTLS *tls.Config) *sipServer {
	t.Helper()
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
	)
	if err != nil {
		t.Fatalf("NewUA() = %v", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatalf("NewServer() = %v", err)
	}
	s := &sipServer{}
	s.setCode(code)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		s.hits.Add(1)
		s.mu.Lock()
		s.reqs = append(s.reqs, req.Clone())
		s.mu.Unlock()
		c := int(s.code.Load())
		if err := tx.Respond(sip.NewResponseFromRequest(req, c, reason(c), nil)); err != nil {
			t.Logf("test server: respond %d: %v", c, err)
		}
	})

	var (
		closeListener func() error
		serve         func() error
	)
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		s.addr, closeListener = pc.LocalAddr().String(), pc.Close
		serve = func() error { return srv.ServeUDP(pc) }
	case "tcp", "tls":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen tcp: %v", err)
		}
		s.addr, closeListener = l.Addr().String(), l.Close
		serve = func() error { return srv.ServeTCP(l) }
		if network == "tls" {
			tl := tls.NewListener(l, serverTLS)
			serve = func() error { return srv.ServeTLS(tl) }
		}
	default:
		t.Fatalf("unknown network %q", network)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve() // returns once the listener is closed
	}()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			_ = closeListener()
			<-done
			_ = ua.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

func reason(code int) string {
	switch code {
	case 200:
		return "OK"
	case 404:
		return "Not Found"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return "Whatever"
}

// silentUDP returns the address of a UDP socket that never answers.
func silentUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc.LocalAddr().String()
}

// silentTCP returns the address of a TCP listener that completes the
// handshake (via the kernel backlog) but never reads or answers.
func silentTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// closedTCP returns a 127.0.0.1 address with nothing listening.
func closedTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// newProber builds a Prober closed at the end of the test.
func newProber(t *testing.T, cfg Config, opts ...Option) *Prober {
	t.Helper()
	if cfg.FromHost == "" {
		cfg.FromHost = "edge.test.invalid" // deliberately unresolvable
	}
	opts = append([]Option{WithLogger(quiet)}, opts...)
	p, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return p
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// statusOf returns the status of name, or fails the test.
func statusOf(t *testing.T, p *Prober, name string) TargetStatus {
	t.Helper()
	for _, st := range p.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("Status() has no target %q", name)
	return TargetStatus{}
}

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	got []change
}

type change struct {
	name string
	up   bool
	st   TargetStatus
}

func (c *changes) record(name string, up bool, st TargetStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, change{name, up, st})
}

func (c *changes) list() []change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]change(nil), c.got...)
}

// logSink collects JSON log records from concurrent writers.
type logSink struct{ testutil.LockedBuffer }

// records returns the records whose msg equals msg.
func (s *logSink) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// countGoroutines counts goroutines whose stack mentions substr.
func countGoroutines(substr string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, substr) {
			count++
		}
	}
	return count
}

// probeLoop matches the probe goroutines, also those not yet running.
const probeLoop = "created by github.com/umedge/umedge/core/internal/health.(*target).start"

// testTLS returns a self-signed certificate for 127.0.0.1, valid for both
// server and client auth, and a pool that trusts it.
func testTLS(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "umedge health test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
