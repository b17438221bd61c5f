package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/firstboot"
	"github.com/umedge/umedge/appliance/internal/apptest"
	"github.com/umedge/umedge/core/config"
)

// answer builds a response to req with status, echoing its Call-ID unless
// callID is set.
func answer(req, status, callID string) string {
	if callID == "" {
		for _, l := range strings.Split(req, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Call-ID: "); ok {
				callID = v
			}
		}
	}
	return "SIP/2.0 " + status + "\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// udpPeer answers each datagram with reply(request); "" = stay silent.
func udpPeer(t *testing.T, reply func(string) string) netip.AddrPort {
	t.Helper()
	addr := apptest.ServeUDP(t, "127.0.0.1:0", func(req []byte) []byte {
		if r := reply(string(req)); r != "" {
			return []byte(r)
		}
		return nil
	})
	return netip.MustParseAddrPort(addr.String())
}

func tcpPeer(t *testing.T, reply func(string) string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var req strings.Builder
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					req.WriteString(l)
					if l == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(reply(req.String())))
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func healthz(t *testing.T, code int) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte("degraded: plugin umrouter is not live\n"))
	}))
	t.Cleanup(s.Close)
	return s.URL + "/healthz"
}

func TestCheck(t *testing.T) {
	ok := func(req string) string { return answer(req, "200 OK", "") }
	tests := []checkCase{
		{"udp 200 and healthz ok", Target{SIP: udpPeer(t, ok), Network: "udp", Healthz: healthz(t, 200)}, ""},
		{"tcp 200, no admin API", Target{SIP: tcpPeer(t, ok), Network: "tcp"}, ""},
		{"the OPTIONS must be well formed", Target{SIP: udpPeer(t, func(req string) string {
			for _, h := range []string{"OPTIONS sip:", "\r\nVia: SIP/2.0/UDP 127.0.0.1:", ";branch=z9hG4bK", "\r\nCSeq: 1 OPTIONS\r\n", "\r\nMax-Forwards: 70\r\n", "\r\nContent-Length: 0\r\n\r\n"} {
				if !strings.Contains(req, h) {
					return answer(req, "400 Missing "+strings.TrimSpace(h), "")
				}
			}
			return ok(req)
		}), Network: "udp"}, ""},
		{"503 answer", Target{SIP: udpPeer(t, func(req string) string { return answer(req, "503 Service Unavailable", "") }), Network: "udp"}, "503 Service Unavailable"},
		{"someone else's answer", Target{SIP: udpPeer(t, func(req string) string { return answer(req, "200 OK", "other@x") }), Network: "udp"}, `Call-ID "other@x"`},
		{"no answer", Target{SIP: udpPeer(t, func(string) string { return "" }), Network: "udp"}, "timeout"},
		{"healthz degraded", Target{SIP: udpPeer(t, ok), Network: "udp", Healthz: healthz(t, 503)}, "503 Service Unavailable: degraded"},
		{"nothing listens", Target{SIP: netip.MustParseAddrPort(closedPort(t)), Network: "tcp"}, "connection refused"},
	}
	runChecks(t, tests, 300*time.Millisecond)
}

type checkCase = struct {
	name    string
	target  Target
	wantErr string // "" = healthy
}

// runChecks runs Check on each case, bounded by timeout.
func runChecks(t *testing.T, tests []checkCase, timeout time.Duration) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			err := Check(ctx, tt.target)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check = %v, want healthy", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTargetOf(t *testing.T) {
	tests := []struct {
		toml string
		want Target
	}{
		{"[sip]\nmode = \"tcp\"\nlisten = [\"::\"]\n",
			Target{SIP: netip.MustParseAddrPort("127.0.0.1:5060"), Network: "udp", Healthz: "http://127.0.0.1:9060/healthz"}},
		{"[sip]\nmode = \"tcp\"\nudp = false\nlisten = [\"192.0.2.10\"]\ntcp_port = 5070\n[admin]\nlisten = \"\"\n",
			Target{SIP: netip.MustParseAddrPort("192.0.2.10:5070"), Network: "tcp"}},
		{"[sip]\nmode = \"tcp\"\nlisten = [\"::1\"]\n[admin]\nlisten = \"localhost:9061\"\n",
			Target{SIP: netip.MustParseAddrPort("[::1]:5060"), Network: "udp", Healthz: "http://127.0.0.1:9061/healthz"}},
	}
	for _, tt := range tests {
		cfg, err := config.Parse("t.toml", []byte(tt.toml))
		if err != nil {
			t.Fatal(err)
		}
		got, err := TargetOf(cfg)
		if err != nil || got != tt.want {
			t.Errorf("TargetOf(%q) = %+v, %v; want %+v", tt.toml, got, err, tt.want)
		}
	}
}

// tlsPeer is a TLS listener that wants a client certificate, as edged's
// mutual TLS does, at TLS version v; hang makes it accept connections
// and never answer (a daemon that hangs: the kernel still takes them).
func tlsPeer(t *testing.T, v uint16, hang bool) netip.AddrPort {
	t.Helper()
	certPEM, keyPEM, err := firstboot.SelfSigned("edge.example.net", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: x509.NewCertPool(), MinVersion: v, MaxVersion: v}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if hang {
				t.Cleanup(func() { c.Close() })
				continue
			}
			go func() {
				defer c.Close()
				_ = tls.Server(c, cfg).Handshake()
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestCheckTLS: on a TLS-only listener the probe needs edged's TLS stack
// to answer (a handshake, or the alert refusing a client without a
// certificate); a listener that takes the connection and hangs fails.
func TestCheckTLS(t *testing.T) {
	runChecks(t, []checkCase{
		{"TLS 1.3 wants a client certificate", Target{SIP: tlsPeer(t, tls.VersionTLS13, false), Network: "tls"}, ""},
		{"TLS 1.2 wants a client certificate", Target{SIP: tlsPeer(t, tls.VersionTLS12, false), Network: "tls"}, ""},
		{"hangs", Target{SIP: tlsPeer(t, tls.VersionTLS13, true), Network: "tls"}, "TLS handshake"},
		{"plain TCP that hangs", Target{SIP: tcpPeer(t, func(string) string { return "" }), Network: "tls"}, "TLS handshake"},
	}, 500*time.Millisecond)
}
