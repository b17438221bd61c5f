//go:build integration

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/hep"
	"github.com/umedge/umedge/core/internal/sipptest"
	"github.com/umedge/umedge/core/internal/testutil"
)

// SIP capture against a real HEP consumer: sngrep (Debian sngrep) listens
// for HEPv3 and writes what it decodes to a pcap, with the addresses and
// ports each captured message carried; edged runs a proxy call (UDP
// caller, TCP callee) and a redirect call with capture on.

// sngrep is a running sngrep HEP listener writing to pcap.
type sngrep struct {
	cmd  *exec.Cmd
	pcap string
	out  strings.Builder
	done chan error
}

func startSngrep(t *testing.T, port int, settings ...string) *sngrep {
	t.Helper()
	bin, err := exec.LookPath("sngrep")
	if err != nil {
		t.Fatalf("sngrep is required (make test installs it): %v", err)
	}
	s := &sngrep{pcap: filepath.Join(t.TempDir(), "hep.pcap"), done: make(chan error, 1)}
	// -N: no interface, -q: quiet, -F: not the user's config file, -f:
	// ours (settings, "set NAME VALUE" lines), -L: listen for HEP.
	conf := filepath.Join(t.TempDir(), "sngreprc")
	if err := os.WriteFile(conf, []byte(strings.Join(settings, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-N", "-q", "-F", "-f", conf, "-L", fmt.Sprintf("udp:127.0.0.1:%d", port), "-O", s.pcap)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	waitFor(t, 5*time.Second, "sngrep listening", func() bool { return udpBound(port) })
	return s
}

// udpBound reports whether something listens on 127.0.0.1:port (UDP).
func udpBound(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	return strings.Contains(string(b), fmt.Sprintf("0100007F:%04X", port))
}

// stop ends sngrep, which flushes its pcap, and returns the messages in it.
func (s *sngrep) stop(t *testing.T) []captured {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("sngrep did not stop:\n%s", s.out.String())
	}
	b, err := os.ReadFile(s.pcap)
	if err != nil {
		t.Fatalf("sngrep wrote no pcap: %v\n%s", err, s.out.String())
	}
	return readPcap(t, b)
}

// captured is one message as a HEP consumer saw it.
type captured struct {
	src, dst netip.AddrPort
	text     string
}

func (c captured) startLine() string { l, _, _ := strings.Cut(c.text, "\r\n"); return l }

func (c captured) header(name string) string {
	head, _, _ := strings.Cut(c.text, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// readPcap reads a classic little-endian pcap of Ethernet/IPv4/UDP frames,
// which is what sngrep writes for HEP it received.
func readPcap(t *testing.T, b []byte) []captured {
	t.Helper()
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("not a little-endian Ethernet pcap: % x", b[:min(len(b), 24)])
	}
	var out []captured
	for rest := b[24:]; len(rest) >= 16; {
		n := int(binary.LittleEndian.Uint32(rest[8:]))
		if 16+n > len(rest) {
			t.Fatalf("truncated pcap record")
		}
		frame := rest[16 : 16+n]
		rest = rest[16+n:]
		if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			t.Fatalf("frame is not IPv4: % x", frame[:min(len(frame), 16)])
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		src := netip.AddrFrom4([4]byte(ip[12:16]))
		dst := netip.AddrFrom4([4]byte(ip[16:20]))
		udp := ip[ihl:]
		out = append(out, captured{
			src:  netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp)),
			dst:  netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])),
			text: string(udp[8:]),
		})
	}
	return out
}

func TestIntegrationHEPCapture(t *testing.T) {
	sipptest.Require(t)
	hepPort := freePort(t)
	sg := startSngrep(t, hepPort)

	calleePort, callerPort, redirPort := freePort(t), freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	l := sbcLab(t, calleePort, cdr, "")
	l.Raw += fmt.Sprintf("\n[capture]\nhep = \"127.0.0.1:%d\"\nhep_id = 2001\n", hepPort)
	e := startEdged(t, l)
	if !strings.Contains(e.logText(), "sip capture on") {
		t.Errorf("edged did not log that capture is on:\n%s", tail(e.logText(), 20))
	}

	callee := startSIPp(t, "callee", "-sf", sbcScenario("sbc_uas.xml"), "-t", "t1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(calleePort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	caller := startSIPp(t, "caller", e.target("udp"), "-sf", sbcScenario("sbc_uac.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(callerPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1")
	caller.wait(t, 30*time.Second)
	callee.wait(t, 10*time.Second)
	// The redirect: mailbox 1002's pool answers 302.
	redir := startSIPp(t, "redirect", e.target("udp"), "-sf", filepath.Join(repoRoot(), "docs", "sipp-uac-302.xml"),
		"-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(redirPort), "-s", "1002", "-m", "1")
	redir.wait(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // the last captures reach sngrep
	msgs := sg.stop(t)
	t.Logf("sngrep decoded %d captured messages", len(msgs))

	edge := netip.MustParseAddrPort(e.target("udp"))
	at := func(port int) netip.AddrPort { return netip.AddrPortFrom(edge.Addr(), uint16(port)) }
	// between returns the start lines of the messages from a to b, in order.
	between := func(from, to func(netip.AddrPort) bool) []string {
		var out []string
		for _, m := range msgs {
			if from(m.src) && to(m.dst) {
				out = append(out, m.startLine())
			}
		}
		return out
	}
	is := func(ap netip.AddrPort) func(netip.AddrPort) bool {
		return func(x netip.AddrPort) bool { return x == ap }
	}
	// The B2BUA's connection to the callee comes from an ephemeral port
	// of ours: any port of edged's address but the SIP listener's.
	edgeOut := func(x netip.AddrPort) bool {
		return x.Addr() == edge.Addr() && x != edge && x.Port() != uint16(calleePort)
	}

	tests := []struct {
		name     string
		from, to func(netip.AddrPort) bool
		want     []string // start-line prefixes, in order, each once at least
	}{
		{"caller to edged (udp)", is(at(callerPort)), is(edge), []string{"INVITE sip:1001@", "ACK ", "BYE "}},
		{"edged to caller (udp)", is(edge), is(at(callerPort)), []string{"SIP/2.0 200 OK", "SIP/2.0 200 OK"}},
		{"edged to callee (tcp)", edgeOut, is(at(calleePort)), []string{"INVITE sip:", "ACK ", "BYE "}},
		{"callee to edged (tcp)", is(at(calleePort)), edgeOut, []string{"SIP/2.0 180 Ringing", "SIP/2.0 200 OK", "SIP/2.0 200 OK"}},
		{"redirected caller to edged", is(at(redirPort)), is(edge), []string{"INVITE sip:1002@", "ACK "}},
		{"edged to redirected caller", is(edge), is(at(redirPort)), []string{"SIP/2.0 302 Moved Temporarily"}},
	}
	for _, tt := range tests {
		got := between(tt.from, tt.to)
		i := 0
		for _, line := range got {
			if i < len(tt.want) && strings.HasPrefix(line, tt.want[i]) {
				i++
			}
		}
		if i < len(tt.want) {
			t.Errorf("%s: captured %q, want %q in this order", tt.name, got, tt.want)
		}
	}
	// Each leg keeps its own Call-ID (topology hiding), and every capture
	// of a leg carries the same one.
	ids := map[string]bool{}
	for _, m := range msgs {
		if m.src == at(callerPort) || m.dst == at(callerPort) || m.src == at(calleePort) || m.dst == at(calleePort) {
			ids[m.header("Call-ID")] = true
		}
	}
	if len(ids) != 2 {
		t.Errorf("Call-IDs of the proxy call's two legs: %v, want 2", ids)
	}
	if t.Failed() {
		for _, m := range msgs {
			t.Logf("%s -> %s %s", m.src, m.dst, m.startLine())
		}
	}
	ours := 0 // of this edged: sngrep could see other tests' traffic too
	for _, m := range msgs {
		if m.src == edge || m.dst == edge || m.src == at(calleePort) || m.dst == at(calleePort) {
			ours++
		}
	}
	if metric := e.metric("umedge_capture_hep_sent_total"); metric < float64(ours) {
		t.Errorf("umedge_capture_hep_sent_total = %v, below the %d sngrep got", metric, ours)
	}
}

// Capture is switched on, kept over a bad reload, and off again by
// reloading the config; a collector named by host name is resolved at
// reload.
func TestIntegrationHEPCaptureReload(t *testing.T) {
	l := newLab(t)
	e := startEdged(t, l)
	local, err := hep.Resolve(t.Context(), "localhost:1") // the address localhost resolves to
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	reload := func(text string) (int, string) {
		t.Helper()
		e.writeConfig(text)
		resp, err := http.Post(e.url("/reload"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// next returns the next HEP packet, or false after wait.
	next := func(wait time.Duration) (hep.Packet, bool) {
		buf := make([]byte, 70000)
		_ = pc.SetReadDeadline(time.Now().Add(wait))
		n, err := pc.Read(buf)
		if err != nil {
			return hep.Packet{}, false
		}
		p, _, err := hep.Decode(buf[:n])
		if err != nil {
			t.Fatalf("collector cannot decode: %v", err)
		}
		return p, true
	}
	if _, ok := next(300 * time.Millisecond); ok {
		t.Fatal("captured with capture off (the default)")
	}

	on := l.render(t) + fmt.Sprintf("\n[capture]\nhep = \"localhost:%d\"\nhep_id = 77\n", port)
	if code, body := reload(on); code != http.StatusOK {
		t.Fatalf("reload with capture = %d %s", code, body)
	}
	// The lab gateway's OPTIONS keep-alives to edged, and their answers.
	edge := netip.MustParseAddrPort(e.target("udp"))
	var in, out bool
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !(in && out); {
		p, ok := next(time.Second)
		if !ok {
			continue
		}
		if p.AgentID != 77 || p.Proto != hep.UDP {
			t.Fatalf("packet agent %d proto %d", p.AgentID, p.Proto)
		}
		in = in || p.Dst == edge && strings.HasPrefix(string(p.Payload), "OPTIONS ")
		out = out || p.Src == edge && strings.HasPrefix(string(p.Payload), "SIP/2.0 200 OK")
	}
	if !in || !out {
		t.Fatalf("captured OPTIONS to edged %v, its 200 %v", in, out)
	}

	// A collector that does not resolve: the reload says so, capture stays.
	code, body := reload(l.render(t) + "\n[capture]\nhep = \"no-such-host.invalid:9060\"\n")
	if code == http.StatusOK || !strings.Contains(body, "capture.hep") {
		t.Errorf("reload with an unresolvable collector = %d %q, want an error naming capture.hep", code, body)
	}
	if _, ok := next(2 * time.Second); !ok {
		t.Error("capture stopped after a failed reload")
	}

	if code, body := reload(l.render(t)); code != http.StatusOK {
		t.Fatalf("reload without capture = %d %s", code, body)
	}
	waitFor(t, 5*time.Second, "capture off", func() bool { return strings.Contains(e.logText(), "sip capture off") })
	for { // what was in flight
		if _, ok := next(300 * time.Millisecond); !ok {
			break
		}
	}
	if p, ok := next(time.Second); ok {
		t.Errorf("captured after capture was turned off: %q", p.Payload)
	}
}

// A flood of calls while the collector accepts and never reads: every
// call still gets its 302, the captures edged could not send are counted,
// and edged's memory stays bounded.
func TestIntegrationHEPCaptureFloodSlowCollector(t *testing.T) {
	sipptest.Require(t)
	slow := testutil.NeverReads(t)
	l := newLab(t)
	l.Raw = l.render(t) + fmt.Sprintf("\n[capture]\nhep = %q\nhep_transport = \"tcp\"\nhep_queue = 256\n", slow.String())
	e := startEdged(t, l)
	const calls, rate = 4000, 800
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-a.test", 5062, "tcp"),
		Calls: calls, Rate: rate})
	dropped := 0.0
	for _, r := range []string{"queue-full", "collector-down", "send-error"} {
		dropped += e.metric(`umedge_capture_hep_dropped_total{reason="` + r + `"}`)
	}
	sent := e.metric("umedge_capture_hep_sent_total")
	// Each call is an INVITE, its 302 and an ACK, plus the OPTIONS
	// keep-alives of the lab gateway; most cannot have been sent.
	if dropped == 0 || sent+dropped < 3*calls {
		t.Errorf("captures sent %v, dropped %v, for %d calls", sent, dropped, calls)
	}
	rss := vmRSS(t, e.cmd.Process.Pid)
	if rss > 200<<20 {
		t.Errorf("edged's RSS after the flood is %d MiB", rss>>20)
	}
	t.Logf("%d calls at %d/s all answered; captures sent %v, dropped %v; edged RSS %d MiB", calls, rate, sent, dropped, rss>>20)
}

// vmRSS is a process's resident set size in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The HEP auth key reaches the collector where sngrep checks it: with the
// same password the captures are taken, with another one refused.
func TestIntegrationHEPCaptureAuthKey(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "hep.password")
	if err := os.WriteFile(pw, []byte("s3cret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, listenPass string
		want             bool
	}{{"same password", "s3cret-key", true}, {"other password", "not-the-key", false}} {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			sg := startSngrep(t, port, "set eep.listen.pass "+tt.listenPass)
			l := newLab(t)
			l.Raw = l.render(t) + fmt.Sprintf("\n[capture]\nhep = \"127.0.0.1:%d\"\nhep_password_file = %q\n", port, pw)
			startEdged(t, l)
			time.Sleep(time.Second) // the lab gateway's OPTIONS keep-alives, every 100 ms
			msgs := sg.stop(t)
			options := 0
			for _, m := range msgs {
				if strings.HasPrefix(m.startLine(), "OPTIONS ") {
					options++
				}
			}
			if got := options > 0; got != tt.want {
				t.Errorf("sngrep took %d OPTIONS captures (of %d messages), want some: %v", options, len(msgs), tt.want)
			}
		})
	}
}

// A collector that does not resolve at boot (DNS not up yet) must not keep
// the box from serving calls: edged starts, says why capture is off, and
// routes.
func TestIntegrationHEPCollectorUnresolvedAtStart(t *testing.T) {
	sipptest.Require(t)
	l := newLab(t)
	l.Raw = l.render(t) + "\n[capture]\nhep = \"no-such-host.invalid:9060\"\n"
	e := startEdged(t, l)
	if !strings.Contains(e.logText(), "sip capture not started") || !strings.Contains(e.logText(), "capture.hep") {
		t.Errorf("no log line names capture.hep as the reason capture is off:\n%s", e.logText())
	}
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-a.test", 5062, "tcp"),
		Calls: 5, Rate: 5})
}
