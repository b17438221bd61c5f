package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeBackend struct {
	mu        sync.Mutex
	healthy   error
	reloadErr error
	reloads   int
}

func (f *fakeBackend) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy
}
func (f *fakeBackend) Status() any { return map[string]string{"state": "fine"} }
func (f *fakeBackend) Calls() any  { return []string{"call-1"} }
func (f *fakeBackend) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

func (f *fakeBackend) reloadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

func (f *fakeBackend) set(healthy, reloadErr error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy, f.reloadErr = healthy, reloadErr
}

// startAdmin serves cfg on loopback with a fake back end.
func startAdmin(t *testing.T, cfg Config) (*Server, *fakeBackend) {
	t.Helper()
	b := &fakeBackend{}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "umedge_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	s, err := New(cfg, b, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, b
}

var testClient = &http.Client{Timeout: 5 * time.Second}

func TestAdmin(t *testing.T) {
	s, b := startAdmin(t, Config{Listen: "127.0.0.1:0"})
	base := "http://" + s.Addr()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := testClient.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	b.set(errors.New("no router plugin"), nil)
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "no router plugin") {
		t.Errorf("/healthz unhealthy = %d %q", code, body)
	}
	if code, body := get("/status"); code != 200 || !strings.Contains(body, `"state": "fine"`) {
		t.Errorf("/status = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "umedge_test_total 1") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reload = %d, want 405", code)
	}
	b.set(nil, errors.New("line 3: bad"))
	resp, err := testClient.Post(base+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || b.reloadCount() != 1 {
		t.Errorf("POST /reload = %d after %d reloads", resp.StatusCode, b.reloadCount())
	}
}

// guardCase is one crafted request and what the server must answer.
type guardCase struct {
	name       string
	method     string // default POST
	path       string // default /reload
	host       string // Host header; "" keeps the listener's address; %d is the port
	header     map[string]string
	body       string
	wantStatus int
}

// runGuardCases sends each request to s and checks the status, and that
// Reload ran exactly for the POSTs that were let through.
func runGuardCases(t *testing.T, s *Server, b *fakeBackend, tests []guardCase) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path := cmpOr(tt.method, http.MethodPost), cmpOr(tt.path, "/reload")
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(method, "http://"+s.Addr()+path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = strings.ReplaceAll(tt.host, "%d", port)
			}
			for k, v := range tt.header {
				req.Header.Set(k, strings.ReplaceAll(v, "%d", port))
			}
			before := b.reloadCount()

			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			text, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s Host %q = %d %q, want %d", method, path, req.Host, resp.StatusCode, text, tt.wantStatus)
			}
			reloaded := b.reloadCount() - before
			if wantReload := path == "/reload" && tt.wantStatus == http.StatusOK; reloaded != 0 != wantReload {
				t.Errorf("Reload ran %d times, want it to run: %v", reloaded, wantReload)
			}
			if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestGuardHost: DNS rebinding. A page on evil.example whose name now
// resolves to 127.0.0.1 reaches the listener, but its browser says
// Host: evil.example:PORT.
func TestGuardHost(t *testing.T) {
	s, b := startAdmin(t, Config{Listen: "127.0.0.1:0"})
	runGuardCases(t, s, b, []guardCase{
		{name: "listener address", method: "GET", path: "/status", wantStatus: 200},
		{name: "localhost", method: "GET", path: "/status", host: "localhost:%d", wantStatus: 200},
		{name: "LOCALHOST in capitals", method: "GET", path: "/status", host: "LOCALHOST:%d", wantStatus: 200},
		{name: "ipv6 loopback", method: "GET", path: "/status", host: "[::1]:%d", wantStatus: 200},
		{name: "rebound name on the status page", method: "GET", path: "/status", host: "evil.example:%d", wantStatus: 421},
		{name: "rebound name on the default admin port", method: "GET", path: "/status", host: "evil.example:9060", wantStatus: 421},
		{name: "rebound name posting reload", host: "evil.example:%d", wantStatus: 421},
		{name: "rebound name on metrics", method: "GET", path: "/metrics", host: "evil.example:%d", wantStatus: 421},
		{name: "loopback name with another port", method: "GET", path: "/status", host: "127.0.0.1:1", wantStatus: 421},
		{name: "loopback without port", method: "GET", path: "/status", host: "127.0.0.1", wantStatus: 421},
		{name: "localhost with a trailing dot", method: "GET", path: "/status", host: "localhost.:%d", wantStatus: 421},
		{name: "subdomain of localhost", method: "GET", path: "/status", host: "evil.localhost.example:%d", wantStatus: 421},
		{name: "unspecified address", method: "GET", path: "/status", host: "0.0.0.0:%d", wantStatus: 421},
		{name: "another ip literal", method: "GET", path: "/status", host: "192.0.2.7:%d", wantStatus: 421},
		{name: "plain reload", wantStatus: 200},
	})

	t.Run("request without Host", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "POST /reload HTTP/1.0\r\n\r\n")
		line, _ := io.ReadAll(io.LimitReader(c, 64))
		if !bytes.HasPrefix(line, []byte("HTTP/1.0 421")) {
			t.Errorf("HTTP/1.0 request without Host got %q, want 421", line)
		}
	})
}

// TestGuardCrossSite: a page of another origin POSTs /reload (CSRF): by
// form, by fetch without preflight, with Origin and Sec-Fetch-Site.
func TestGuardCrossSite(t *testing.T) {
	s, b := startAdmin(t, Config{Listen: "127.0.0.1:0"})
	runGuardCases(t, s, b, []guardCase{
		{name: "cross-site origin", header: map[string]string{"Origin": "http://evil.example"}, wantStatus: 403},
		{name: "opaque origin", header: map[string]string{"Origin": "null"}, wantStatus: 403},
		{name: "https origin of the same host", header: map[string]string{"Origin": "https://127.0.0.1:%d"}, wantStatus: 403},
		{name: "origin of another port", header: map[string]string{"Origin": "http://127.0.0.1:1"}, wantStatus: 403},
		{name: "same origin", header: map[string]string{"Origin": "http://127.0.0.1:%d"}, wantStatus: 200},
		{name: "sec-fetch-site cross-site", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, wantStatus: 403},
		{name: "sec-fetch-site same-site", header: map[string]string{"Sec-Fetch-Site": "same-site"}, wantStatus: 403},
		{name: "sec-fetch-site same-origin", header: map[string]string{"Sec-Fetch-Site": "same-origin"}, wantStatus: 200},
		{name: "text/plain form", header: map[string]string{"Content-Type": "text/plain"}, body: "x=1", wantStatus: 415},
		{name: "text/plain without body", header: map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, wantStatus: 415},
		{name: "urlencoded form", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "a=b", wantStatus: 415},
		{name: "multipart form", header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, body: "--x--", wantStatus: 415},
		{name: "body without content type", body: "x", wantStatus: 415},
		{name: "json body", header: map[string]string{"Content-Type": "application/json"}, body: "{}", wantStatus: 200},
		{name: "cross-site get of status is not refused by origin", method: "GET", path: "/status",
			header: map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, wantStatus: 200},
	})
}

const testToken = "0123456789abcdef0123456789abcdef"

// TestGuardToken: with a token set, a mutating call needs it.
func TestGuardToken(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	b := &fakeBackend{}
	s, err := New(Config{Listen: "127.0.0.1:0", Token: func() ([]byte, error) { return []byte(testToken), nil }},
		b, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	runGuardCases(t, s, b, []guardCase{
		{name: "missing token", wantStatus: 401},
		{name: "wrong token", header: map[string]string{"Authorization": "Bearer wrong-wrong-wrong-wrong"}, wantStatus: 401},
		{name: "token prefix", header: map[string]string{"Authorization": "Bearer " + testToken[:16]}, wantStatus: 401},
		{name: "token with more after it", header: map[string]string{"Authorization": "Bearer " + testToken + "x"}, wantStatus: 401},
		{name: "token as basic credentials", header: map[string]string{"Authorization": "Basic " + testToken}, wantStatus: 401},
		{name: "token without scheme", header: map[string]string{"Authorization": testToken}, wantStatus: 401},
		{name: "correct token", header: map[string]string{"Authorization": "Bearer " + testToken}, wantStatus: 200},
		{name: "scheme in lower case", header: map[string]string{"Authorization": "bearer " + testToken}, wantStatus: 200},
		{name: "correct token from another origin", header: map[string]string{
			"Authorization": "Bearer " + testToken, "Origin": "http://evil.example"}, wantStatus: 403},
		{name: "reads need no token", method: "GET", path: "/status", wantStatus: 200},
	})
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "admin request refused") {
		t.Fatalf("refusals were not logged at debug level:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), testToken[:16]) || strings.Contains(logs.String(), "wrong-wrong") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestGuardRemote: a listener that is not loopback-only refuses mutating
// calls unless a token is set and sent. The guard is driven directly: a
// test may not open a non-loopback listener.
func TestGuardRemote(t *testing.T) {
	unreadable := errors.New("open /etc/umedge/admin.token: permission denied")
	tests := []struct {
		name       string
		giveListen string
		giveToken  func() ([]byte, error)
		giveAuth   string
		wantStatus int
	}{
		{name: "remote without token set", giveListen: "192.0.2.1:9060", wantStatus: 403},
		{name: "remote with an empty token", giveListen: "192.0.2.1:9060",
			giveToken: func() ([]byte, error) { return nil, nil }, wantStatus: 403},
		{name: "wildcard without token set", giveListen: ":9060", wantStatus: 403},
		{name: "host name without token set", giveListen: "edge.example.net:9060", wantStatus: 403},
		{name: "remote, token not sent", giveListen: "192.0.2.1:9060",
			giveToken: func() ([]byte, error) { return []byte(testToken), nil }, wantStatus: 401},
		{name: "remote, wrong token", giveListen: "192.0.2.1:9060", giveAuth: "Bearer " + strings.Repeat("x", 32),
			giveToken: func() ([]byte, error) { return []byte(testToken), nil }, wantStatus: 401},
		{name: "remote, correct token", giveListen: "192.0.2.1:9060", giveAuth: "Bearer " + testToken,
			giveToken: func() ([]byte, error) { return []byte(testToken), nil }, wantStatus: 200},
		{name: "token file unreadable", giveListen: "192.0.2.1:9060", giveAuth: "Bearer " + testToken,
			giveToken: func() ([]byte, error) { return nil, unreadable }, wantStatus: 503},
		{name: "loopback without token set", giveListen: "127.0.0.1:9060", wantStatus: 200},
		{name: "localhost without token set", giveListen: "localhost:9060", wantStatus: 200},
		{name: "ipv6 loopback without token set", giveListen: "[::1]:9060", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := newGuard(Config{Listen: tt.giveListen, Token: tt.giveToken}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			g.port = 9060
			reached := false
			h := g.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			req := httptest.NewRequest(http.MethodPost, "/reload", nil)
			req.Host = "127.0.0.1:9060"
			if tt.giveAuth != "" {
				req.Header.Set("Authorization", tt.giveAuth)
			}
			rec := httptest.NewRecorder()

			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Errorf("POST /reload = %d %q, want %d", rec.Code, rec.Body.String(), tt.wantStatus)
			}
			if reached != (tt.wantStatus == 200) {
				t.Errorf("handler reached = %v with status %d", reached, rec.Code)
			}
			if strings.Contains(rec.Body.String(), "permission denied") {
				t.Errorf("the reason the token is unreadable reached the client: %q", rec.Body.String())
			}
		})
	}
}

// TestGuardListenHost: the configured listen host, and the address the
// connection arrived at, are accepted Host names besides loopback.
func TestGuardListenHost(t *testing.T) {
	tests := []struct {
		name       string
		giveListen string
		giveHost   string
		giveLocal  string // address the connection arrived at; "" = none
		wantStatus int
	}{
		{name: "configured ip", giveListen: "192.0.2.1:9060", giveHost: "192.0.2.1:9060", wantStatus: 200},
		{name: "configured name", giveListen: "admin.example.net:9060", giveHost: "Admin.Example.NET:9060", wantStatus: 200},
		{name: "configured ipv6 in another spelling", giveListen: "[2001:db8::1]:9060", giveHost: "[2001:db8:0::1]:9060", wantStatus: 200},
		{name: "other name", giveListen: "admin.example.net:9060", giveHost: "evil.example:9060", wantStatus: 421},
		{name: "wildcard, address of the connection", giveListen: ":9060", giveHost: "192.0.2.9:9060", giveLocal: "192.0.2.9:9060", wantStatus: 200},
		{name: "wildcard, other address", giveListen: ":9060", giveHost: "192.0.2.8:9060", giveLocal: "192.0.2.9:9060", wantStatus: 421},
		{name: "wildcard, the wildcard itself", giveListen: "0.0.0.0:9060", giveHost: "0.0.0.0:9060", wantStatus: 421},
		{name: "wildcard, a name", giveListen: ":9060", giveHost: "evil.example:9060", giveLocal: "192.0.2.9:9060", wantStatus: 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := newGuard(Config{Listen: tt.giveListen}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			g.port = 9060
			h := g.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest(http.MethodGet, "/status", nil)
			req.Host = tt.giveHost
			if tt.giveLocal != "" {
				la, err := net.ResolveTCPAddr("tcp", tt.giveLocal)
				if err != nil {
					t.Fatal(err)
				}
				req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, la))
			}
			rec := httptest.NewRecorder()

			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Errorf("GET /status Host %q = %d %q, want %d", tt.giveHost, rec.Code, rec.Body.String(), tt.wantStatus)
			}
		})
	}
}
