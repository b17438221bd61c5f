//go:build integration

package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// The SBC against real peers: SIPp as the caller and SIPp as the back end,
// edged in between running the call as a B2BUA with media anchored.

// sbcLab is the lab with mailbox 1001 in a proxy pool whose one back end
// is a SIPp callee on 127.0.0.1:calleePort over TCP, CDRs in cdr.
func sbcLab(t *testing.T, calleePort int, cdr string, extra string) lab {
	t.Helper()
	l := newLab(t)
	l.Mailbox1001Pool = "sbc"
	l.Raw = l.render(t) + fmt.Sprintf(`
[plugins.umrouter.settings.pools.sbc]
action = "proxy"
[[plugins.umrouter.settings.pools.sbc.backends]]
name = "callee"
host = "127.0.0.1"
tcp_port = %d
tls_port = 0

[media]
port_min = 61000
port_max = 61999

[sbc]
cdr_file = %q
%s
`, calleePort, cdr, extra)
	return l
}

// sippProc is a SIPp run outside sipptest's UAC model (a UAS, or a UAC
// whose message trace the test reads).
type sippProc struct {
	cmd  *exec.Cmd
	out  strings.Builder
	log  string // -message_file
	done chan error
}

func startSIPp(t *testing.T, name string, args ...string) *sippProc {
	t.Helper()
	return startSIPpIn(t, "", name, args...)
}

// startSIPpIn runs SIPp in network namespace ns ("" = the test's).
func startSIPpIn(t *testing.T, ns, name string, args ...string) *sippProc {
	t.Helper()
	dir := t.TempDir()
	p := &sippProc{log: filepath.Join(dir, name+"-msg.log"), done: make(chan error, 1)}
	args = append(args, "-trace_msg", "-message_file", p.log, "-nostdin", "-timeout", "40", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	p.cmd = exec.Command(sipptest.Binary, args...)
	if ns != "" {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, sipptest.Binary}, args...)...) // ip execs SIPp: Kill reaches it
	}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
			t.Logf("sipp %s errors:\n%s", name, tail(string(b), 30))
		}
	})
	return p
}

func (p *sippProc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("sipp %v: %v\n%s", p.cmd.Args[1:4], err, tail(p.out.String(), 20))
		}
	case <-time.After(d):
		t.Fatalf("sipp %v did not finish in %v", p.cmd.Args[1:4], d)
	}
}

// received returns the messages SIPp logged as received.
func (p *sippProc) received(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, part := range strings.Split(string(b), "----------------------------------------------- ") {
		if head, msg, ok := strings.Cut(part, "message received"); ok && !strings.Contains(head, "sent") {
			out = append(out, msg)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no received messages in %s:\n%s", p.log, tail(string(b), 30))
	}
	return out
}

func readCDRs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("CDR %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// leg returns a CDR's media counters of one leg (0 = caller's).
func leg(t *testing.T, rec map[string]any, i int) map[string]any {
	t.Helper()
	m, ok := rec["media"].(map[string]any)
	if !ok {
		t.Fatalf("CDR without media: %v", rec)
	}
	legs := m["Legs"].([]any)
	return legs[i].(map[string]any)
}

func num(m map[string]any, k string) float64 { f, _ := m[k].(float64); return f }

// relayedBothWays checks a CDR's legs: at least least packets came in on
// each, and what one leg took in, the other sent.
func relayedBothWays(t *testing.T, a, b map[string]any, least float64) {
	t.Helper()
	for _, dir := range []struct {
		name    string
		in, out map[string]any
	}{{"caller → callee", a, b}, {"callee → caller", b, a}} {
		in, out := num(dir.in, "PacketsIn"), num(dir.out, "PacketsOut")
		if in < least || out < in*0.99 {
			t.Errorf("%s: %v packets in, %v relayed out", dir.name, in, out)
		}
	}
}

// The acceptance call of issue 6: a UDP caller, a TCP callee, the full
// call, each side seeing only edged, and each side's pcap arriving at the
// other.
func TestIntegrationSBCProxyCall(t *testing.T) {
	sipptest.Require(t)
	calleePort, calleeMedia, callerPort, callerMedia := freePort(t), freePort(t), freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, calleePort, cdr, ""))
	testdata := filepath.Join(repoRoot(), "core", "cmd", "edged", "testdata")

	callee := startSIPp(t, "callee", "-sf", filepath.Join(testdata, "sbc_uas.xml"), "-t", "t1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(calleePort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(calleeMedia), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	caller := startSIPp(t, "caller", e.target("udp"), "-sf", filepath.Join(testdata, "sbc_uac.xml"), "-t", "u1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(callerPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(callerMedia),
		"-s", "1001", "-m", "1")

	// While the call is up, /calls shows it with both legs.
	waitFor(t, 5*time.Second, "the call on /calls", func() bool {
		calls := e.calls()
		return len(calls) == 1 && calls[0]["state"] == "confirmed" && calls[0]["leg_b"].(map[string]any)["transport"] == "tcp"
	})
	caller.wait(t, 30*time.Second)
	callee.wait(t, 10*time.Second)

	// Topology hiding: neither side got a message naming the other's ports
	// or tags.
	for _, m := range caller.received(t) {
		for _, secret := range []string{":" + strconv.Itoa(calleePort), " " + strconv.Itoa(calleeMedia) + " ", "SIPpTag01"} {
			if strings.Contains(m, secret) {
				t.Errorf("the caller got %q of the callee:\n%s", secret, m)
			}
		}
	}
	for _, m := range callee.received(t) {
		for _, secret := range []string{":" + strconv.Itoa(callerPort), " " + strconv.Itoa(callerMedia) + " ", "SIPpTag00", "o=caller"} {
			if strings.Contains(m, secret) {
				t.Errorf("the callee got %q of the caller:\n%s", secret, m)
			}
		}
	}

	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	rec := readCDRs(t, cdr)[0]
	if testing.Verbose() {
		j, _ := json.MarshalIndent(rec, "", "  ")
		t.Logf("CDR: %s\ncallee's first message:\n%s", j, callee.received(t)[0])
	}
	if rec["status"] != 200.0 || rec["reason"] != "caller hung up" {
		t.Errorf("CDR status %v reason %v", rec["status"], rec["reason"])
	}
	a, b := leg(t, rec, 0), leg(t, rec, 1)
	// Each SIPp plays 236 packets; what one leg took in, the other sent.
	relayedBothWays(t, a, b, 200)
	if r := a["Remote"]; r != fmt.Sprintf("127.0.0.1:%d", callerMedia) {
		t.Errorf("caller leg latched %v, want its media port %d", r, callerMedia)
	}
	if r := b["Remote"]; r != fmt.Sprintf("127.0.0.1:%d", calleeMedia) {
		t.Errorf("callee leg latched %v, want its media port %d", r, calleeMedia)
	}
}

// calls is the admin API's /calls.
func (e *edged) calls() []map[string]any {
	res, err := e.get("/calls")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var calls []map[string]any
	_ = json.NewDecoder(res.Body).Decode(&calls)
	return calls
}

// confirmed waits until n calls are up.
func (e *edged) confirmed(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d confirmed calls", n), func() bool {
		calls := e.calls()
		up := 0
		for _, c := range calls {
			if c["state"] == "confirmed" {
				up++
			}
		}
		return up == n
	})
}

func sbcScenario(name string) string {
	return filepath.Join(repoRoot(), "core", "cmd", "edged", "testdata", name)
}

// uas starts a SIPp back end on port (TCP) with its media on port+1's
// neighbourhood.
func uas(t *testing.T, name, scenario string, port int, extra ...string) *sippProc {
	t.Helper()
	args := append([]string{"-sf", sbcScenario(scenario), "-t", "t1", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-m", "1"}, extra...)
	p := startSIPp(t, name, args...)
	time.Sleep(300 * time.Millisecond) // listening
	return p
}

func uac(t *testing.T, e *edged, name, scenario string) *sippProc {
	t.Helper()
	return startSIPp(t, name, e.target("udp"), "-sf", sbcScenario(scenario), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1")
}

// The classic SBC in front of Exchange UM: the UM service answers 302 to
// its worker instance, edged follows it itself (R-CR-5) and the caller
// never sees it; then the caller holds and resumes the call with
// re-INVITEs, relayed both ways with the media engine's SDP.
func TestIntegrationSBCFollowsRedirectAndHolds(t *testing.T) {
	sipptest.Require(t)
	service, worker := freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, service, cdr, ""))
	w := uas(t, "worker", "sbc_uas_hold.xml", worker)
	s := uas(t, "service", "sbc_uas_302.xml", service, "-set", "worker", strconv.Itoa(worker))
	caller := uac(t, e, "caller", "sbc_uac_hold.xml")
	caller.wait(t, 30*time.Second)
	s.wait(t, 5*time.Second)
	w.wait(t, 5*time.Second)

	for _, m := range caller.received(t) {
		if strings.HasPrefix(strings.TrimSpace(m[strings.Index(m, "\n"):]), "SIP/2.0 302") {
			t.Errorf("the caller saw the 302:\n%s", m)
		}
	}
	var held, resumed bool
	for _, m := range w.received(t) {
		held = held || strings.Contains(m, "INVITE sip:") && strings.Contains(m, "a=sendonly")
		resumed = resumed || held && strings.Contains(m, "CSeq: 4 INVITE") && strings.Contains(m, "a=sendrecv")
	}
	if !held || !resumed {
		t.Errorf("the worker did not get the hold (%v) and the resume (%v) re-INVITEs", held, resumed)
	}
	var answeredHold bool
	for _, m := range caller.received(t) {
		answeredHold = answeredHold || strings.Contains(m, "CSeq: 2 INVITE") && strings.Contains(m, "a=recvonly")
	}
	if !answeredHold {
		t.Error("the caller's hold was not answered recvonly")
	}
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	if rec := readCDRs(t, cdr)[0]; rec["redirects"] != 1.0 || rec["status"] != 200.0 || rec["reason"] != "caller hung up" {
		t.Errorf("CDR: redirects %v status %v reason %v", rec["redirects"], rec["status"], rec["reason"])
	}
}

// redirect_mode = "rewrite" for the caller: the UM service's 302 reaches
// the caller with its Contact rewritten onto edged (a signed marker, no
// back-end address); the caller's INVITE to it is proxied to the worker
// the 302 named; a forged marker gets 403.
func TestIntegrationSBCRewritesRedirect(t *testing.T) {
	sipptest.Require(t)
	service, worker := freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, service, cdr, "[sbc.peers.lab]\nredirect_mode = \"rewrite\"\n"))
	w := uas(t, "worker", "sbc_uas.xml", worker)
	s := uas(t, "service", "sbc_uas_302.xml", service, "-set", "worker", strconv.Itoa(worker))
	caller := uac(t, e, "caller", "sbc_uac_follow.xml")
	caller.wait(t, 30*time.Second)
	s.wait(t, 5*time.Second)
	w.wait(t, 5*time.Second)

	var saw302 bool
	for _, m := range caller.received(t) {
		for _, secret := range []string{":" + strconv.Itoa(worker), ":" + strconv.Itoa(service), "SIPpTag02", "SIPpTag01"} {
			if strings.Contains(m, secret) {
				t.Errorf("the caller got %q of the back end:\n%s", secret, m)
			}
		}
		saw302 = saw302 || strings.Contains(m, "SIP/2.0 302") && strings.Contains(m, "Contact: <sip:umr.")
	}
	if !saw302 {
		t.Error("the caller got no 302 with a marker Contact")
	}
	waitFor(t, 5*time.Second, "the CDRs", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 2 })
	recs := readCDRs(t, cdr)
	if recs[0]["status"] != 302.0 || recs[1]["status"] != 200.0 || recs[1]["reason"] != "caller hung up" {
		t.Errorf("CDRs: %v / %v", recs[0], recs[1])
	}
}

// refer_mode = "handle_locally" for the caller (R-ID-8: CUCM handles UM's
// REFER badly): the UM back end answers, then transfers with REFER to a
// target on the caller's gateway; edged answers 202, calls the target
// itself, moves the caller's media with a re-INVITE and tells UM in
// NOTIFYs; UM hangs up. The caller never sees a REFER.
func TestIntegrationSBCReferHandledLocally(t *testing.T) {
	sipptest.Require(t)
	um, target := freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, um, cdr, "[sbc.peers.lab]\nrefer_mode = \"handle_locally\"\n"))
	tg := startSIPp(t, "target", "-sf", sbcScenario("sbc_uas_target.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(target),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-m", "1")
	u := uas(t, "um", "sbc_uas_refer.xml", um, "-set", "target", strconv.Itoa(target))
	caller := uac(t, e, "caller", "sbc_uac_xfer.xml")
	caller.wait(t, 30*time.Second)
	u.wait(t, 10*time.Second)
	tg.wait(t, 10*time.Second)

	hidden(t, "the caller", caller.received(t), true, ":"+strconv.Itoa(target), ":"+strconv.Itoa(um), "SIPpTag03", "SIPpTag01")
	var notified bool
	for _, m := range u.received(t) {
		notified = notified || strings.Contains(m, "NOTIFY sip:") && strings.Contains(m, "SIP/2.0 200 OK") && strings.Contains(m, "terminated")
	}
	if !notified {
		t.Error("UM got no final NOTIFY with the target's 200")
	}
	hidden(t, "the target", tg.received(t), false, ":"+strconv.Itoa(um), "SIPpTag00")
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	if rec := readCDRs(t, cdr)[0]; rec["status"] != 200.0 || rec["reason"] != "caller hung up" {
		t.Errorf("CDR: %v", rec)
	}
}

// hidden checks that no message who received (a transfer's peer) is a
// REFER, when refer, or shows any of secrets: the other peers' ports and
// tags.
func hidden(t *testing.T, who string, msgs []string, refer bool, secrets ...string) {
	t.Helper()
	for _, m := range msgs {
		if refer && (strings.Contains(m, "REFER sip:") || strings.Contains(m, "Refer-To")) {
			t.Errorf("%s saw the REFER:\n%s", who, m)
		}
		for _, secret := range secrets {
			if strings.Contains(m, secret) {
				t.Errorf("%s got %q of another peer:\n%s", who, secret, m)
			}
		}
	}
}

// refer_mode = "handle_locally" for the back end's pool (R-ID-8, R-SBC-7,
// the other direction): the caller transfers the call with REFER to a
// target on its gateway; edged answers 202, calls the target itself,
// moves the back end's media to it with a re-INVITE and tells the caller
// in NOTIFYs (100 Trying, then the target's 200 OK); the caller hangs up,
// released, and the call goes on between the back end and the target
// until the back end hangs up. The back end never sees a REFER.
func TestIntegrationSBCCallerReferHandledLocally(t *testing.T) {
	sipptest.Require(t)
	um, target := freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, um, cdr, "[sbc.peers.sbc]\nrefer_mode = \"handle_locally\"\n"))
	targetMedia := freePort(t)
	tg := startSIPp(t, "target", "-sf", sbcScenario("sbc_uas_target.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(target),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(targetMedia), "-rtp_echo", "-m", "1")
	u := uas(t, "um", "sbc_uas_moved.xml", um)
	callerPort := freePort(t)
	caller := startSIPp(t, "caller", e.target("udp"), "-sf", sbcScenario("sbc_uac_refer.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(callerPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1",
		"-set", "target", strconv.Itoa(target))
	caller.wait(t, 30*time.Second)
	u.wait(t, 10*time.Second)
	tg.wait(t, 10*time.Second)

	hidden(t, "the back end", u.received(t), true, ":"+strconv.Itoa(target), ":"+strconv.Itoa(callerPort), "SIPpTag03", "SIPpTag00")
	got := tg.received(t)
	hidden(t, "the target", got, false, ":"+strconv.Itoa(um), ":"+strconv.Itoa(callerPort), "SIPpTag00", "SIPpTag01")
	if len(got) == 0 || !strings.Contains(got[0], "INVITE sip:2002@") {
		t.Errorf("the target got no INVITE first: %q", got)
	}
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	rec := readCDRs(t, cdr)[0]
	if rec["status"] != 200.0 || rec["reason"] != "callee hung up" {
		t.Errorf("CDR: %v", rec)
	}
	// The back end's media went to the target, which echoed it (SIPp
	// -rtp_echo) back through edged, not to the caller, whose media was
	// latched before the transfer.
	a, b := leg(t, rec, 0), leg(t, rec, 1)
	if a["Remote"] != "127.0.0.1:"+strconv.Itoa(targetMedia) || num(b, "PacketsIn") < 30 || num(a, "PacketsOut") < 30 || num(a, "PacketsIn") < 30 {
		t.Errorf("media after the transfer: leg A sends to %v, %v out, %v in; leg B %v in; want the target's %d, ≥ 30 each",
			a["Remote"], num(a, "PacketsOut"), num(a, "PacketsIn"), num(b, "PacketsIn"), targetMedia)
	}
}

// Header rules through edged: the caller's inbound rule rewrites the
// Diversion the back end gets, the pool's outbound rule adds a header to
// every message to the back end, the caller's outbound rule to every
// message to the caller.
func TestIntegrationSBCHeaderRules(t *testing.T) {
	sipptest.Require(t)
	callee := freePort(t)
	rules := `
[[sbc.peers.lab.header_rules]]
direction = "in"
header = "Diversion"
part = "user"
match = '^1001$'
action = "replace"
value = "4001"
[[sbc.peers.lab.header_rules]]
direction = "out"
header = "X-Edge"
action = "add"
value = "to-caller"
[[sbc.peers.sbc.header_rules]]
direction = "out"
header = "X-Edge"
action = "add"
value = "to-backend"
`
	e := startEdged(t, sbcLab(t, callee, filepath.Join(t.TempDir(), "cdr.jsonl"), rules))
	b := uas(t, "callee", "sbc_uas.xml", callee)
	a := uac(t, e, "caller", "sbc_uac.xml")
	a.wait(t, 30*time.Second)
	b.wait(t, 10*time.Second)
	var inv, bye bool
	for _, m := range b.received(t) {
		if strings.Contains(m, "INVITE sip:") {
			inv = strings.Contains(m, "Diversion: <sip:4001@") && strings.Contains(m, "X-Edge: to-backend")
		}
		bye = bye || strings.Contains(m, "BYE sip:") && strings.Contains(m, "X-Edge: to-backend")
		if strings.Contains(m, "to-caller") {
			t.Errorf("the back end got the caller's header:\n%s", m)
		}
	}
	if !inv || !bye {
		t.Errorf("the back end's INVITE (%v) or BYE (%v) was not rewritten", inv, bye)
	}
	for _, m := range a.received(t) {
		if !strings.Contains(m, "X-Edge: to-caller") || strings.Contains(m, "to-backend") {
			t.Errorf("a message to the caller without its rule's header:\n%s", m)
		}
	}
}

// A call with no media ends by the inactivity timeout: BYE to both legs,
// reason in the CDR. And a call in progress at SIGTERM is ended the same
// way, its CDR written before edged exits.
func TestIntegrationSBCEndsCalls(t *testing.T) {
	sipptest.Require(t)
	t.Run("media timeout", func(t *testing.T) {
		callee := freePort(t)
		cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
		l := sbcLab(t, callee, cdr, "")
		l.Raw = strings.Replace(l.Raw, "port_max = 61999\n", "port_max = 61999\ninactivity_timeout = \"2s\"\n", 1)
		e := startEdged(t, l)
		b := uas(t, "callee", "sbc_uas_quiet.xml", callee)
		a := uac(t, e, "caller", "sbc_uac_wait.xml")
		start := time.Now()
		a.wait(t, 20*time.Second)
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("the call without media lasted %v, timeout 2s", d)
		}
		b.wait(t, 5*time.Second)
		waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
		if rec := readCDRs(t, cdr)[0]; rec["reason"] != "media timeout" {
			t.Errorf("CDR reason %v", rec["reason"])
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		callee := freePort(t)
		cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
		e := startEdged(t, sbcLab(t, callee, cdr, ""))
		b := uas(t, "callee", "sbc_uas_quiet.xml", callee)
		a := uac(t, e, "caller", "sbc_uac_wait.xml")
		e.confirmed(t, 1)
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		a.wait(t, 10*time.Second)
		b.wait(t, 10*time.Second)
		select {
		case <-e.exited:
		case <-time.After(5 * time.Second):
			t.Fatal("edged did not exit")
		}
		recs := readCDRs(t, cdr)
		if len(recs) != 1 || recs[0]["reason"] != "shutdown" || recs[0]["status"] != 200.0 {
			t.Fatalf("CDRs after SIGTERM: %v", recs)
		}
	})
}

// Admission: over sbc.max_calls, and with the media ports used up, a call
// gets 503 with Retry-After at once.
func TestIntegrationSBCAdmission(t *testing.T) {
	sipptest.Require(t)
	for _, tc := range []struct{ name, edit string }{
		{"call limit", "max_calls = 1\n"},
		{"media ports", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			callee := freePort(t)
			l := sbcLab(t, callee, filepath.Join(t.TempDir(), "cdr.jsonl"), tc.edit)
			if tc.edit == "" { // two port pairs: one call's two legs
				l.Raw = strings.Replace(l.Raw, "port_max = 61999", "port_max = 61003", 1)
			}
			e := startEdged(t, l)
			b := uas(t, "callee", "sbc_uas.xml", callee)
			a := uac(t, e, "caller", "sbc_uac.xml")
			e.confirmed(t, 1)
			e.sipp(t, sipptest.Run{Scenario: sipptest.UACCode, Codes: []int{503}, RetryAfter: true, Service: "1001"})
			a.wait(t, 30*time.Second)
			b.wait(t, 5*time.Second)
		})
	}
}

// pcapWithRTCP writes a copy of SIPp's G.711 pcap into dir with an RTCP
// sender report (and CNAME) of its stream on RTP+1 at each offset from its
// first packet, and a scenario that is sbc_uas.xml playing it; it returns
// the scenario's path. SIPp plays every packet of a pcap to the remote
// media port plus the packet's offset from the pcap's lowest port, so the
// reports reach the RTCP port of edged's leg.
func pcapWithRTCP(t *testing.T, dir string, at ...time.Duration) string {
	t.Helper()
	const src = "/usr/share/sip-tester/g711a.pcap"
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint32(b) != 0xa1b2c3d4 || le.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", src)
	}
	const eth, ip, udp = 14, 20, 8
	out := append([]byte{}, b[:24]...)
	var first []byte // the first frame: the template of the reports
	var t0 int64
	for off := 24; off+16 <= len(b); {
		n := int(le.Uint32(b[off+8:]))
		rec := b[off : off+16+n]
		off += 16 + n
		ts := int64(le.Uint32(rec))*1e6 + int64(le.Uint32(rec[4:]))
		if first == nil {
			first, t0 = rec[16:], ts
		}
		for len(at) > 0 && ts-t0 >= at[0].Microseconds() {
			out = append(out, rtcpFrame(first, t0+at[0].Microseconds())...)
			at = at[1:]
		}
		out = append(out, rec...)
	}
	if first == nil || len(first) < eth+ip+udp+12 {
		t.Fatalf("%s: no RTP", src)
	}
	pcap := filepath.Join(dir, "g711a-rtcp.pcap")
	if err := os.WriteFile(pcap, out, 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := os.ReadFile(sbcScenario("sbc_uas.xml"))
	if err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(dir, "sbc_uas_rtcp.xml")
	if err := os.WriteFile(scenario, []byte(strings.Replace(string(sc), src, pcap, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return scenario
}

// rtcpFrame is a pcap record at ts (µs) of an RTCP SR and SDES CNAME of
// the RTP stream of frame (Ethernet, IPv4, UDP, RTP), from and to the
// ports after its own.
func rtcpFrame(frame []byte, ts int64) []byte {
	const eth, ip, udp = 14, 20, 8
	ssrc := frame[eth+ip+udp+8 : eth+ip+udp+12]
	cname := "callee"
	sr := []byte{0x80, 200, 0, 6}
	sr = append(sr, ssrc...)
	sr = binary.BigEndian.AppendUint64(sr, uint64(ts)<<12) // an NTP-ish time: only relayed
	sr = append(sr, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 160)  // RTP time, packets, octets
	sdes := []byte{0x81, 202, 0, byte((8 + 2 + len(cname) + 2) / 4)}
	sdes = append(sdes, ssrc...)
	sdes = append(sdes, 1, byte(len(cname)))
	sdes = append(sdes, cname...)
	sdes = append(sdes, 0, 0)
	payload := append(sr, sdes...)
	f := append([]byte{}, frame[:eth+ip+udp]...)
	binary.BigEndian.PutUint16(f[eth+2:], uint16(ip+udp+len(payload)))
	f[eth+10], f[eth+11] = 0, 0
	var sum uint32
	for i := eth; i < eth+ip; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(f[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(f[eth+10:], ^uint16(sum))
	binary.BigEndian.PutUint16(f[eth+ip:], binary.BigEndian.Uint16(f[eth+ip:])+1)
	binary.BigEndian.PutUint16(f[eth+ip+2:], binary.BigEndian.Uint16(f[eth+ip+2:])+1)
	binary.BigEndian.PutUint16(f[eth+ip+4:], uint16(udp+len(payload)))
	f[eth+ip+6], f[eth+ip+7] = 0, 0
	f = append(f, payload...)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(ts/1e6))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(ts%1e6))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(len(f)))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(len(f)))
	return append(rec, f...)
}

// baresipConfig is a baresip that dials with SRTP (mediaenc=srtp: RFC
// 8643 opportunistic SRTP, RTP/AVP with a=crypto), sends a sine wave and
// records what it hears into dir (sndfile).
const baresipConfig = `poll_method		epoll
sip_listen		127.0.0.1:%d
audio_player		%s
audio_source		ausine,440
ausrc_srate		48000
ausrc_channels		2
audio_alert		%s
rtp_ports		%d-%d
module_path		/usr/lib/baresip/modules
module			g711.so
module			ausine.so
module			aufile.so
module			sndfile.so
module			srtp.so
module_app		account.so
module_app		menu.so
snd_path		%s
`

// A real softphone behind the SBC: baresip with SRTP calls through edged
// to a plain-RTP SIPp callee. Media flows both ways, the caller's leg
// carries SRTP only (every packet authenticated, none stray), and baresip
// decrypts and hears the callee's pcap.
func TestIntegrationSBCBaresipSRTP(t *testing.T) {
	sipptest.Require(t)
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Fatalf("baresip is required (make test installs baresip-core): %v", err)
	}
	callee := freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, callee, cdr, `[sbc.peers.lab]
media_security = "srtp"
[sbc.peers.sbc]
media_security = "rtp"
`))
	// The callee's pcap carries two RTCP sender reports early on, then
	// none: they reach baresip relayed, then the engine's own reports do.
	dir := t.TempDir()
	b := startSIPp(t, "callee", "-sf", pcapWithRTCP(t, dir, 200*time.Millisecond, 400*time.Millisecond), "-t", "t1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(callee), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening

	rec := filepath.Join(dir, "rec")
	if err := os.Mkdir(rec, 0o755); err != nil {
		t.Fatal(err)
	}
	rtp := freePort(t)
	conf := fmt.Sprintf(baresipConfig, freePort(t), "aufile,"+filepath.Join(dir, "out.wav"), "aufile,"+filepath.Join(dir, "alert.wav"), rtp, rtp+20, rec)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:4000@127.0.0.1>;regint=0;mediaenc=srtp;audio_codecs=PCMA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("baresip", "-f", dir, "-t", "9", "-e", fmt.Sprintf("/dial sip:1001@%s", e.target("udp")))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("baresip: %v\n%s", err, tail(out.String(), 40))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("baresip:\n%s", tail(out.String(), 40))
		}
	})
	b.wait(t, 10*time.Second)
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	r := readCDRs(t, cdr)[0]
	a, bl := leg(t, r, 0), leg(t, r, 1)
	if a["Secure"] != true || bl["Secure"] != false {
		t.Errorf("leg A secure %v, leg B secure %v: want SRTP to baresip, RTP to the callee", a["Secure"], bl["Secure"])
	}
	// baresip sends 50 RTP packets a second for the call's 9 s: every one
	// of them must authenticate, and so must all of its SRTCP. baresip
	// 1.0 also sends plain RTCP on its SRTP session (captured: the RTCP
	// APP "PING" of its stream start, before its srtp module is on, and
	// the RTCP BYE of its teardown, after the module's helper is gone;
	// media's TestSRTCPDropped has both byte for byte): dropped and
	// counted as unprotected, not as failures. The BYE races the SIP BYE
	// that ends the call, so it may not be read at all.
	if in := num(a, "PacketsIn"); in < 400 || num(a, "Strays") != 0 || num(a, "SRTPFailures") != 0 || num(a, "SRTPReplays") != 0 {
		t.Errorf("leg A: %v packets in, %v strays, %v SRTP failures, %v replays", in, num(a, "Strays"), num(a, "SRTPFailures"), num(a, "SRTPReplays"))
	}
	if u := num(a, "Unprotected"); u < 1 || u > 2 {
		t.Errorf("leg A: %v unprotected RTCP, want baresip's plain APP and at most its BYE", u)
	}
	// RTCP both ways: baresip's SRTCP (its APP again, encrypted, and its
	// sender reports) reaches the callee decrypted; the callee's two
	// reports reach baresip as SRTCP under our key, and once the callee
	// is quiet for 5 s the engine's own receiver reports do; baresip takes
	// them all (it would log a failed decryption).
	if in := num(a, "RTCPIn"); in < 2 || num(bl, "RTCPOut") != in {
		t.Errorf("baresip → callee RTCP: %v in on leg A, %v out on leg B", in, num(bl, "RTCPOut"))
	}
	if in, own := num(bl, "RTCPIn"), num(a, "RTCPOwn"); in != 2 || own < 1 || num(a, "RTCPOut") != in+own {
		t.Errorf("callee → baresip RTCP: %v in on leg B, %v out on leg A of which %v our own; want 2, 2 + own, ≥ 1", in, num(a, "RTCPOut"), own)
	}
	if strings.Contains(out.String(), "failed to decrypt") {
		t.Errorf("baresip could not decrypt what we sent:\n%s", tail(out.String(), 40))
	}
	if num(bl, "PacketsIn") < 200 || num(a, "PacketsOut") < num(bl, "PacketsIn")*0.99 {
		t.Errorf("callee → baresip: %v packets in on leg B, %v out on leg A", num(bl, "PacketsIn"), num(a, "PacketsOut"))
	}
	// What baresip decoded from our SRTP is the callee's audio, not silence.
	wavs, _ := filepath.Glob(filepath.Join(rec, "*dec*.wav"))
	if len(wavs) == 0 {
		entries, _ := os.ReadDir(rec)
		t.Fatalf("baresip recorded nothing: %v", entries)
	}
	pcm, err := os.ReadFile(wavs[0])
	if err != nil {
		t.Fatal(err)
	}
	loud := 0
	for i := 44; i+1 < len(pcm); i += 2 {
		if v := int16(uint16(pcm[i]) | uint16(pcm[i+1])<<8); v > 1000 || v < -1000 {
			loud++
		}
	}
	if loud < 8000 { // a second of speech at 8 kHz is thousands of such samples
		t.Errorf("baresip heard %d loud samples in %s (%d bytes): no audio came through", loud, wavs[0], len(pcm))
	}
}

// A back end that refuses connections fails the call at once with 503 and
// the reason, not after Timer B.
func TestIntegrationSBCDeadBackend(t *testing.T) {
	sipptest.Require(t)
	e := startEdged(t, sbcLab(t, freePort(t), filepath.Join(t.TempDir(), "cdr.jsonl"), ""))
	res := e.sipp(t, sipptest.Run{Scenario: sipptest.UACCode, Codes: []int{503}, Service: "1001", RecvTimeout: 3 * time.Second})
	if res.Duration > 3*time.Second {
		t.Errorf("the 503 took %v", res.Duration)
	}
}

// tlsFront terminates TLS in front of a TCP SIP peer, demanding a client
// certificate chaining to ca: a UM back end listening on SIP/TLS with
// mutual TLS (R-SEC-3). It records the client certificate names it saw.
type tlsFront struct {
	ln    net.Listener
	mu    sync.Mutex
	names []string
}

func startTLSFront(t *testing.T, pki devpki.Files, to string) *tlsFront {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFront{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					f.mu.Lock()
					f.names = append(f.names, pc[0].Subject.CommonName)
					f.mu.Unlock()
				}
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, tc) }()
				_, _ = io.Copy(tc, up)
			}()
		}
	}()
	return f
}

func (f *tlsFront) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// The classic SBC in front of Exchange UM: a UDP-only gateway calls a
// SIPSecured dial plan; edged calls the back end over mutual TLS with its
// own certificate. (A redirect would have refused the UDP call.)
func TestIntegrationSBCUDPToTLS(t *testing.T) {
	sipptest.Require(t)
	calleeTCP := freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	l := sbcLab(t, 0, cdr, "")
	front := startTLSFront(t, l.PKI, fmt.Sprintf("127.0.0.1:%d", calleeTCP))
	l.Raw = strings.Replace(l.Raw, "tcp_port = 0\ntls_port = 0\n", fmt.Sprintf("tcp_port = 0\ntls_port = %d\n", front.port()), 1)
	l.Raw = strings.Replace(l.Raw, "[plugins.umrouter.settings.dial_plans.lab]\n", "[plugins.umrouter.settings.dial_plans.lab]\nvoip_security = \"SIPSecured\"\n", 1)
	l.Raw = strings.Replace(l.Raw, "access_numbers = [\"5000\"]\npool = \"a\"", "access_numbers = [\"5000\"]\npool = \"sbc\"", 1)
	e := startEdged(t, l)
	b := uas(t, "callee", "sbc_uas_quiet.xml", calleeTCP)
	a := uac(t, e, "caller", "sbc_uac_wait.xml")
	e.confirmed(t, 1)
	calls := e.calls()
	if lb := calls[0]["leg_b"].(map[string]any); lb["transport"] != "tls" {
		t.Errorf("leg B over %v, want tls", lb["transport"])
	}
	// The caller hangs up by way of the appliance's shutdown: both legs
	// get their BYE.
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	a.wait(t, 10*time.Second)
	b.wait(t, 10*time.Second)
	front.mu.Lock()
	defer front.mu.Unlock()
	if len(front.names) == 0 || front.names[0] != "umedge.local" {
		t.Errorf("the back end saw client certificates %v, want edged's umedge.local", front.names)
	}
}
