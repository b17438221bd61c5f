//go:build integration

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// Tests of the Call Router's decision path against the shipped all-in-one
// config, driven with hand-made datagrams where the exact bytes matter.

// shippedLab is configs/umedge.toml as shipped, with only what a test must
// change: free ports, the built plugins and their pins, and a fresh demo PKI.
func shippedLab(t *testing.T, edit func(string) string) lab {
	t.Helper()
	l := newLab(t)
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "configs", "umedge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	pins := regexp.MustCompile(`(?m)^sha256sums = .*$`).FindString(l.render(t)) // where binaries() pinned them
	pki, err := devpki.Write(t.TempDir(), demoServer, demoGateway)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, r := range []struct{ re, to string }{
		{`(?m)^listen = "127\.0\.0\.1:9060"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, l.AdminPort)},
		{`(?m)^tcp_port = 5060`, fmt.Sprintf("tcp_port = %d", l.SIPPort)},
		{`(?m)^tls_port = 5061`, fmt.Sprintf("tls_port = %d", l.TLSPort)},
		{`(?m)^dir = "bin/plugins"`, fmt.Sprintf("dir = %q", l.PluginDir)},
		{`(?m)^sha256sums = .*$`, pins},
		{`(?m)^cert = "bin/tls/server.pem"`, fmt.Sprintf("cert = %q", pki.ServerCert)},
		{`(?m)^key = "bin/tls/server-key.pem"`, fmt.Sprintf("key = %q", pki.ServerKey)},
		{`(?m)^client_ca = "bin/tls/ca.pem"`, fmt.Sprintf("client_ca = %q", pki.CA)},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(text) {
			t.Fatalf("configs/umedge.toml has no line matching %s: the test must follow the shipped config", r.re)
		}
		text = re.ReplaceAllLiteralString(text, r.to)
	}
	if edit != nil {
		text = edit(text)
	}
	l.Raw = text
	return l
}

// udpPeer is a gateway that speaks raw SIP over UDP from 127.0.0.1.
type udpPeer struct {
	t    *testing.T
	conn *net.UDPConn
	port int
}

func newUDPPeer(t *testing.T, e *edged) *udpPeer {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: e.lab.SIPPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port}
}

var callSeq int

// invite is an INVITE to the pilot 5000 from user from, with the given
// Diversion header values (most recent first); branch and Call-ID are new
// unless given.
func (p *udpPeer) invite(from string, diversions ...string) string {
	callSeq++
	return p.inviteTx(fmt.Sprintf("z9hG4bK-it-%d", callSeq), fmt.Sprintf("it-%d@127.0.0.1", callSeq), from, diversions...)
}

func (p *udpPeer) inviteTx(branch, callID, from string, diversions ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE sip:5000@umedge.local SIP/2.0\r\n")
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n", p.port, branch)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@127.0.0.1>;tag=t%d\r\n", from, callSeq)
	fmt.Fprintf(&b, "To: <sip:5000@umedge.local>\r\n")
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: 1 INVITE\r\n")
	fmt.Fprintf(&b, "Contact: <sip:%s@127.0.0.1:%d>\r\n", from, p.port)
	for _, d := range diversions {
		fmt.Fprintf(&b, "Diversion: %s\r\n", d)
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// send sends msg and returns the final answer (skipping 1xx), or "" when
// none came within wait.
func (p *udpPeer) send(msg string, wait time.Duration) string {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
	return p.final(wait)
}

func (p *udpPeer) final(wait time.Duration) string {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, err := p.conn.Read(buf)
		if err != nil {
			return ""
		}
		if resp := string(buf[:n]); !strings.HasPrefix(resp, "SIP/2.0 1") {
			return resp
		}
	}
}

func code(resp string) int {
	if len(resp) < 11 || !strings.HasPrefix(resp, "SIP/2.0 ") {
		return 0
	}
	n, _ := strconv.Atoi(resp[8:11])
	return n
}

func contactOf(resp string) string {
	for _, l := range strings.Split(resp, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Contact: "); ok {
			return v
		}
	}
	return ""
}

// Finding 1 of issue 5, the exact message pair against the shipped config:
// the old cache key joined fields with | ; : after %-decoding, so a From
// user 2001%7Cd%3A1001%3Bno-answer with one Diversion (for 9999) had the
// key of a plain From 2001 diverted from 1001 and then 9999. One spoofed
// datagram made every such call for mailbox 1001 get 404 for the TTL.
func TestIntegrationCraftedCallerPoisonsNothing(t *testing.T) {
	e := startEdged(t, shippedLab(t, nil))
	p := newUDPPeer(t, e)
	crafted := p.send(p.invite("2001%7Cd%3A1001%3Bno-answer", "<sip:9999@127.0.0.1>;reason=no-answer"), 2*time.Second)
	if code(crafted) != 404 {
		t.Fatalf("crafted INVITE got %q, want 404 (not numeric in the TelExtn plan)", crafted)
	}
	for i := range 3 {
		legit := p.send(p.invite("2001", "<sip:1001@127.0.0.1>;reason=no-answer", "<sip:9999@127.0.0.1>;reason=no-answer"), 2*time.Second)
		if code(legit) != 302 || contactOf(legit) != "<sip:5000@127.0.0.1:5062;transport=tcp>" {
			t.Fatalf("legit diverted call %d after the crafted one got %q, want 302 to the local pool", i, legit)
		}
	}
}

// Finding 7 of issue 5: a valid escaped caller that decodes to invalid
// UTF-8 failed the gRPC call and got a false 503 plugin-unavailable.
func TestIntegrationInvalidUTF8Caller(t *testing.T) {
	e := startEdged(t, shippedLab(t, nil))
	p := newUDPPeer(t, e)
	got := p.send(p.invite("40%E901", "<sip:1001@127.0.0.1>;reason=no-answer"), 2*time.Second)
	if code(got) != 404 || !strings.Contains(got, "bad-number") {
		t.Errorf("caller 40%%E901 got %q, want 404 bad-number (the TelExtn plan wants digits), never 503", got)
	}
}

// Findings 2 and 3 of issue 5: after a reload the new configuration holds
// at once; a rate bucket survives a reload that keeps its rate; a
// retransmitted INVITE gets the answer its first copy got, never a second
// token's 503.
func TestIntegrationReloadAndRateLimit(t *testing.T) {
	oneCPS := func(s string) string {
		return strings.Replace(s, "calls_per_second = 0 ", "calls_per_second = 1 ", 1)
	}
	l := shippedLab(t, oneCPS)
	e := startEdged(t, l)
	p := newUDPPeer(t, e)

	first := p.invite("4711")
	got := p.send(first, 2*time.Second)
	if code(got) != 302 {
		t.Fatalf("first call got %q", got)
	}
	for i := range 3 { // its 302 was "lost": the gateway retransmits
		if again := p.send(first, 2*time.Second); again != got {
			t.Fatalf("retransmission %d got\n%q\nwant the same bytes as\n%q", i, again, got)
		}
	}
	if second := p.send(p.invite("4712"), 2*time.Second); code(second) != 503 || !strings.Contains(second, "Retry-After:") {
		t.Fatalf("second call within the second got %q, want 503 + Retry-After", second)
	}
	// A reload that changes nothing of the gateway keeps its bucket.
	e.writeConfig(strings.Replace(l.Raw, `level = "info"`, `level = "debug"`, 1))
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reload", func() bool { return strings.Contains(e.logText(), "config reloaded") })
	if third := p.send(p.invite("4713"), 2*time.Second); code(third) != 503 {
		t.Errorf("call right after a reload got %q, want 503: the bucket must not reset", third)
	}

	// Disable the gateway: the very next call is refused, no stale answer.
	time.Sleep(1100 * time.Millisecond) // a token again
	e.writeConfig(strings.Replace(l.Raw, `status = "Enabled"`, `status = "Disabled"`, 1))
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the second reload", func() bool {
		return strings.Count(e.logText(), "config reloaded") >= 2
	})
	if got := p.send(p.invite("4714"), 2*time.Second); code(got) != 403 || !strings.Contains(got, "gateway-disabled") {
		t.Errorf("call after the gateway was disabled got %q, want 403 gateway-disabled", got)
	}
}

// Finding 5 of issue 5: with the router plugin stopped (SIGSTOP), calls
// went unanswered for seconds while /healthz said ok. The table answers
// calls without the plugin, so they keep getting their answer at once.
func TestIntegrationStoppedPluginDoesNotStopCalls(t *testing.T) {
	e := startEdged(t, shippedLab(t, nil))
	p := newUDPPeer(t, e)
	pid := e.plugin("umrouter").PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	for i := range 50 {
		start := time.Now()
		got := p.send(p.invite(fmt.Sprintf("+4930%04d", i), "<sip:1002@127.0.0.1>;reason=no-answer"), time.Second)
		if code(got) != 302 {
			t.Fatalf("call %d with the plugin stopped got %q, want 302 from the table", i, got)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Fatalf("call %d took %s with the plugin stopped", i, d)
		}
	}
}

// mixLab is the shipped config with its router settings replaced by the
// benchmark mix's 10,000-mailbox directory (sipptest.WriteMix).
func mixLab(t *testing.T, calls int) (lab, *sipptest.MixFiles) {
	t.Helper()
	f, err := sipptest.WriteMix(t.TempDir(), sipptest.Mix{Seed: 7, Calls: calls})
	if err != nil {
		t.Fatal(err)
	}
	settings, err := os.ReadFile(f.Settings)
	if err != nil {
		t.Fatal(err)
	}
	l := shippedLab(t, func(s string) string {
		i := strings.Index(s, "# Everything below [plugins.umrouter.settings]")
		if i < 0 {
			t.Fatal("configs/umedge.toml: no marker before the router settings")
		}
		return s[:i] + string(settings)
	})
	return l, f
}

// TestIntegrationPluginFailureOnTheMix kills (SIGKILL) or stops (SIGSTOP:
// hung, not dead) the router plugin while SIPp places the benchmark mix —
// every call from another caller, 80 % diverted into a 10,000-mailbox
// directory, 9 % unknown numbers. Every INVITE must get its final answer,
// and the right one (the line's expected code and Contact), since the
// core answers from the routing table without the plugin; the host must
// see the hang, report it on /healthz, kill and restart the plugin.
func TestIntegrationPluginFailureOnTheMix(t *testing.T) {
	sipptest.Require(t)
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill", syscall.SIGKILL}, {"hang", syscall.SIGSTOP}} {
		t.Run(tt.name, func(t *testing.T) {
			const calls, rate = 3000, 300
			l, mix := mixLab(t, calls)
			e := startEdged(t, l)
			before := e.plugin("umrouter")
			type outcome struct {
				res *sipptest.Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				r := sipptest.Run{Scenario: sipptest.UACMix, Target: e.target("udp"), Inject: mix.CSV,
					Calls: calls, Rate: rate, RecvTimeout: 2 * time.Second}
				res, err := r.Exec(context.Background(), t)
				done <- outcome{res, err}
			}()
			time.Sleep(2 * time.Second)
			if err := syscall.Kill(before.PID, tt.sig); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(before.PID, syscall.SIGCONT) })
			hit := time.Now()
			if tt.sig == syscall.SIGSTOP {
				waitFor(t, 3*time.Second, "/healthz to report the hung plugin", func() bool {
					code, body := e.healthz()
					return code == 503 && strings.Contains(body, "degraded") && strings.Contains(body, "umrouter")
				})
			}
			var back time.Duration
			waitFor(t, 10*time.Second, "the plugin to run again", func() bool {
				p := e.plugin("umrouter")
				if p.PID != before.PID && p.State == "running" && p.Live {
					back = time.Since(hit)
					return true
				}
				return false
			})
			t.Logf("plugin back %v after %v", back, tt.sig)
			e.waitHealthy()
			o := <-done
			if o.err != nil {
				t.Fatal(o.err)
			}
			t.Logf("final responses: %v", o.res.Codes)
			if o.res.Failed != 0 || o.res.Successful != calls {
				t.Fatalf("%d right, %d failed of %d: every INVITE must get the answer its line expects\n%s",
					o.res.Successful, o.res.Failed, calls, o.res.Errors)
			}
			if tt.sig == syscall.SIGSTOP && e.metric(`umedge_plugin_hung_kills_total{plugin="umrouter"}`) != 1 {
				t.Error("umedge_plugin_hung_kills_total does not show the kill of the hung plugin")
			}
			if got := e.metric(`umedge_router_decisions_total{by="plugin"}`); got != 0 {
				t.Errorf("%v calls were asked of the plugin; the table answers all of the mix", got)
			}
		})
	}
}
