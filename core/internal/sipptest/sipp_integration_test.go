//go:build integration

package sipptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const wantContact = `^<sip:1001@127\.0\.0\.1:5062;transport=tcp>$`

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatalf("Available() = %v; the integration tests need sipp (make test installs sip-tester)", err)
	}
}

// pki is a test CA with a server and a client certificate, as PEM files.
type pki struct {
	serverTLS             *tls.Config // requires a client certificate from the CA
	clientCert, clientKey string      // files for SIPp
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert := newCert(t, "umedge test CA", nil, nil, true)
	srvKey, srvCert := newCert(t, "127.0.0.1", caKey, caCert, false)
	cliKey, cliCert := newCert(t, "gateway.test", caKey, caCert, false)

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	p := pki{
		serverTLS: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	der, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	writePEM(t, p.clientCert, "CERTIFICATE", cliCert.Raw)
	writePEM(t, p.clientKey, "PRIVATE KEY", der)
	return p
}

func newCert(t *testing.T, cn string, parentKey *ecdsa.PrivateKey, parent *x509.Certificate, ca bool) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{cn},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return key, cert
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// serve starts r on transport and returns a Run aimed at it.
func serve(t *testing.T, r *responder, transport string) Run {
	t.Helper()
	run := Run{Transport: transport, Calls: 10, Rate: 200, RecvTimeout: 2 * time.Second}
	switch transport {
	case "udp":
		run.Target = r.serveUDP(t)
	case "tcp":
		run.Target = r.serveStream(t, nil)
	case "tls":
		p := newPKI(t)
		run.Target = r.serveStream(t, p.serverTLS)
		run.TLSCert, run.TLSKey = p.clientCert, p.clientKey
	}
	return run
}

func execRun(t *testing.T, run Run) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := run.Exec(ctx, t)
	if err != nil {
		if res != nil {
			t.Logf("stderr: %s\nerrors: %s", res.Stderr, res.Errors)
		}
		t.Fatalf("Exec() = %v", err)
	}
	return res
}

func checkAllSuccessful(t *testing.T, res *Result, calls int) {
	t.Helper()
	if res.Created != calls || res.Successful != calls || res.Failed != 0 {
		t.Errorf("result %s, want %d successful calls\nerrors: %s", res, calls, res.Errors)
	}
}

var transports = []string{"udp", "tcp", "tls"}

func TestExec302(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			r := newResponder(redirect302)
			run := serve(t, r, tp)
			run.Scenario, run.ContactPattern = UAC302, wantContact

			res := execRun(t, run)

			checkAllSuccessful(t, res, run.Calls)
			if res.Codes[302] != run.Calls {
				t.Errorf("Codes = %v, want %d × 302", res.Codes, run.Calls)
			}
			invites, acks, stray := r.counts()
			if invites != run.Calls || acks != run.Calls || stray != 0 {
				t.Errorf("server saw %d INVITE branches, %d ACKs on an INVITE branch, %d on another; want %d, %d, 0",
					invites, acks, stray, run.Calls, run.Calls)
			}
			if tp == "tls" && r.clientCerts == 0 {
				t.Errorf("no TLS connection presented a client certificate")
			}
		})
	}
}

func TestExec302ContactMismatchFails(t *testing.T) {
	r := newResponder(redirect302)
	run := serve(t, r, "udp")
	run.Scenario, run.ContactPattern = UAC302, `^<sip:1002@`

	res := execRun(t, run)

	if res.Successful != 0 || res.Failed != run.Calls || res.Counters["FailedRegexpDoesntMatch"] != run.Calls {
		t.Errorf("result %s (counters %v), want every call failed on the Contact check", res, res.Counters)
	}
	if res.ExitCode != 1 {
		t.Errorf("ExitCode = %d, want 1", res.ExitCode)
	}
}

func TestExecHeaders(t *testing.T) {
	// The called party comes from Diversion when there is one (R-ID-5).
	fromDiversion := func(req *sip.Request) (int, string, map[string]string) {
		user := req.Recipient.User
		if h := req.GetHeader("Diversion"); h != nil {
			var uri sip.Uri
			v := h.Value()
			if err := sip.ParseUri(v[1:len(v)-len(";reason=no-answer")-1], &uri); err == nil {
				user = uri.User
			}
		}
		return 302, "Moved Temporarily", map[string]string{"Contact": fmt.Sprintf("<sip:%s@127.0.0.1:5062;transport=tcp>", user)}
	}
	r := newResponder(fromDiversion)
	run := serve(t, r, "tcp")
	run.Scenario, run.Service = UAC302, "5000"
	run.Headers = []string{"Diversion: <sip:1002@127.0.0.1>;reason=no-answer"}
	run.ContactPattern = `^<sip:1002@127\.0\.0\.1:5062;transport=tcp>$`

	checkAllSuccessful(t, execRun(t, run), run.Calls)
}

func TestExecCodes(t *testing.T) {
	answer := func(code int, headers map[string]string) answerFunc {
		return func(*sip.Request) (int, string, map[string]string) { return code, "Rejected", headers }
	}
	tests := []struct {
		name       string
		scenario   string
		answer     answerFunc
		codes      []int
		retryAfter bool
		wantOK     bool
		wantCode   int
	}{
		{name: "404 expected", scenario: UACCode, answer: answer(404, nil), codes: []int{404}, wantOK: true, wantCode: 404},
		{name: "one of several", scenario: UACCode, answer: answer(403, nil), codes: []int{403, 404}, wantOK: true, wantCode: 403},
		{name: "503 with retry-after", scenario: UACCode, answer: answer(503, map[string]string{"Retry-After": "30"}), codes: []int{503}, retryAfter: true, wantOK: true, wantCode: 503},
		{name: "503 without retry-after", scenario: UACCode, answer: answer(503, nil), codes: []int{503}, retryAfter: true, wantCode: 503},
		{name: "unexpected code", scenario: UACCode, answer: answer(480, nil), codes: []int{404}, wantCode: 480},
		{name: "302 scenario accepts listed codes", scenario: UAC302, answer: answer(404, nil), codes: []int{404}, wantOK: true, wantCode: 404},
		{name: "302 scenario refuses others", scenario: UAC302, answer: answer(404, nil), wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResponder(tt.answer)
			run := serve(t, r, "udp")
			run.Scenario, run.Codes, run.RetryAfter, run.Calls = tt.scenario, tt.codes, tt.retryAfter, 3

			res := execRun(t, run)

			if tt.wantOK {
				checkAllSuccessful(t, res, run.Calls)
			} else if res.Failed != run.Calls {
				t.Errorf("result %s, want %d failed calls", res, run.Calls)
			}
			if res.Codes[tt.wantCode] != run.Calls {
				t.Errorf("Codes = %v, want %d × %d", res.Codes, run.Calls, tt.wantCode)
			}
			if _, acks, stray := r.counts(); tt.wantOK && (acks != run.Calls || stray != 0) {
				t.Errorf("ACKs on the INVITE branch %d, elsewhere %d; want %d, 0", acks, stray, run.Calls)
			}
		})
	}
}

func TestExecRetrans(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			r := newResponder(redirect302)
			run := serve(t, r, tp)
			run.Scenario, run.ContactPattern = UACRetrans, wantContact

			checkAllSuccessful(t, execRun(t, run), run.Calls)
			r.mu.Lock()
			defer r.mu.Unlock()
			for branch, n := range r.invites {
				if n != 2 {
					t.Errorf("branch %s: %d INVITEs, want the same INVITE twice", branch, n)
				}
			}
			if len(r.acks) != run.Calls {
				t.Errorf("%d ACK branches, want %d", len(r.acks), run.Calls)
			}
		})
	}
}

func TestExecRetransDetectsChangedContact(t *testing.T) {
	// Each transaction's retransmission gets another Contact than its first
	// INVITE: counted per branch, so that concurrent calls cannot pair up
	// two answers that happen to agree.
	var mu sync.Mutex
	seen := map[string]int{}
	changing := func(req *sip.Request) (int, string, map[string]string) {
		branch, _ := req.Via().Params.Get("branch")
		mu.Lock()
		seen[branch]++
		k := seen[branch]
		mu.Unlock()
		return 302, "Moved Temporarily", map[string]string{
			"Contact": fmt.Sprintf("<sip:1001@127.0.0.%d:5062;transport=tcp>", k),
		}
	}
	r := newResponder(changing)
	run := serve(t, r, "udp")
	run.Scenario = UACRetrans

	res := execRun(t, run)

	if res.Successful != 0 || res.Failed != run.Calls {
		t.Errorf("result %s, want every call failed", res)
	}
}

func TestExecOptions(t *testing.T) {
	tests := []struct {
		name    string
		drop    string
		wantOK  bool
		service string
	}{
		{name: "all headers", wantOK: true},
		{name: "no supported", drop: "Supported"},
		{name: "no allow", drop: "Allow"},
		{name: "no accept", drop: "Accept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResponder(redirect302)
			delete(r.optionsHdrs, tt.drop)
			run := serve(t, r, "udp")
			run.Scenario, run.Calls = UACOptions, 2

			res := execRun(t, run)

			if tt.wantOK {
				checkAllSuccessful(t, res, run.Calls)
			} else if res.Failed != run.Calls {
				t.Errorf("result %s, want %d failed calls", res, run.Calls)
			}
		})
	}
}

func TestExecNoAnswerTimesOut(t *testing.T) {
	r := newResponder(func(*sip.Request) (int, string, map[string]string) { return 0, "", nil })
	run := serve(t, r, "udp")
	run.Scenario, run.Calls, run.RecvTimeout = UAC302, 2, time.Second

	res := execRun(t, run)

	if res.Failed != run.Calls || res.Retransmissions == 0 {
		t.Errorf("result %s, want %d failed calls after retransmissions", res, run.Calls)
	}
}

func TestExecPinned(t *testing.T) {
	r := newResponder(redirect302)
	run := serve(t, r, "udp")
	run.Scenario, run.CPU = UAC302, "0"

	checkAllSuccessful(t, execRun(t, run), run.Calls)
}

func TestExecGlobalTimeout(t *testing.T) {
	r := newResponder(redirect302)
	run := serve(t, r, "udp")
	run.Scenario, run.Calls, run.Rate, run.Timeout = UAC302, 100, 10, 2*time.Second

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := run.Exec(ctx, t)
	if err == nil {
		t.Fatalf("Exec() = nil error, want one for a run cut by its timeout")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Exec() took %v with a 2s timeout", d)
	}
}
