//go:build integration

package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/netnstest"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// natIdleSecs is how long the lab's NAT keeps an idle UDP binding;
// sbc_uas_nat.xml leaves the signalling idle for longer, twice.
const (
	natIdleSecs  = 2
	calleeIdleMS = 8000
)

// The NAT acceptance of issue 6 at the SIP level: a SIPp caller in a
// namespace behind a masquerading router (nftables, random source ports),
// with its private address in Via, Contact and SDP, calls through edged,
// which sits on the router's public side with the SIPp callee behind it.
// edged answers to the source the INVITE came from (RFC 3581), keeps the
// NAT binding open with in-dialog OPTIONS while the signalling is idle for
// longer than the NAT keeps a binding, and sends the callee's re-INVITE
// and BYE to the public address and port it saw; the media latches on the
// router's mapping and flows both ways, before and after the re-INVITE.
// Both keep-alive modes: in-dialog OPTIONS, and CRLF (the default).
func TestIntegrationSBCNATCaller(t *testing.T) {
	sipptest.Require(t)
	for _, mode := range []string{"options", "crlf"} {
		t.Run(mode, func(t *testing.T) { natCall(t, mode) })
	}
}

func natCall(t *testing.T, keepAlive string) {
	t.Helper()
	nat := netnstest.NewNAT(t)
	nat.UDPTimeout(t, natIdleSecs)
	natForgets(t, nat)

	calleePort, calleeMedia, callerPort, callerMedia := freePort(t), freePort(t), freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	l := sbcLab(t, calleePort, cdr, fmt.Sprintf("keepalive = %q\nkeepalive_interval = \"1s\"\n", keepAlive))
	l.Raw = strings.Replace(l.Raw, `listen = ["127.0.0.1", "::1"]`, fmt.Sprintf(`listen = ["127.0.0.1", %q]`, nat.PublicAddr), 1)
	l.Raw = strings.Replace(l.Raw, `addresses = ["127.0.0.1", "::1"]`, fmt.Sprintf(`addresses = ["127.0.0.1", %q]`, nat.RouterAddr), 1)
	startEdgedIn(t, l, nat.Public)

	// The caller's host counts the RTP that reaches it.
	nat.Caller.Exec(t, fmt.Sprintf(`table inet umtest {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %d counter
	}
}
`, callerMedia), "nft", "-f", "-")

	callee := startSIPpIn(t, string(nat.Public), "callee", "-sf", sbcScenario("sbc_uas_nat.xml"), "-t", "t1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(calleePort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(calleeMedia),
		"-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	priv := nat.PrivateAddr.String()
	caller := startSIPpIn(t, string(nat.Caller), "caller", fmt.Sprintf("%s:%d", nat.PublicAddr, l.SIPPort),
		"-sf", sbcScenario("sbc_uac_nat.xml"), "-t", "u1", "-i", priv, "-p", strconv.Itoa(callerPort),
		"-mi", priv, "-mp", strconv.Itoa(callerMedia), "-s", "1001", "-m", "1", "-aa")
	caller.wait(t, 40*time.Second)
	callee.wait(t, 10*time.Second)

	// RFC 3581: the answers name where the INVITE came from.
	via := regexp.MustCompile(`(?m)^Via: SIP/2\.0/UDP ` + regexp.QuoteMeta(priv) + `:` + strconv.Itoa(callerPort) + `;(.*)$`)
	rport := regexp.MustCompile(`(^|;)rport=(\d+)(;|$)`)
	var answered bool
	var keepAlives, reinvites, byes int
	for _, m := range caller.received(t) {
		first := strings.TrimSpace(m[strings.Index(m, "\n"):])
		switch {
		case strings.HasPrefix(first, "SIP/2.0 200"):
			if v := via.FindStringSubmatch(m); v != nil {
				params := strings.TrimSpace(v[1])
				rp := rport.FindStringSubmatch(params)
				answered = answered || rp != nil && rp[2] != "" && strings.Contains(params, "received="+nat.RouterAddr.String())
			}
		case strings.HasPrefix(first, "OPTIONS sip:4000@"+priv):
			keepAlives++
		case strings.HasPrefix(first, "INVITE sip:4000@"+priv):
			reinvites++
		case strings.HasPrefix(first, "BYE sip:4000@"+priv):
			byes++
		}
		if strings.Contains(m, "127.0.0.1") {
			t.Errorf("the caller got the inside address:\n%s", m)
		}
	}
	if !answered {
		t.Errorf("no 200 with rport and received= %s of the NAT's mapping: %q", nat.RouterAddr, caller.received(t))
	}
	// The signalling was idle twice for calleeIdleMS: the NAT would have
	// forgotten the binding without the keep-alives.
	want := 2 * (calleeIdleMS/1000 - 1)
	if keepAlive != "options" {
		want = 0 // CRLF keep-alives do not show in SIPp's message log
	}
	if keepAlives < want || reinvites != 1 || byes != 1 {
		t.Errorf("the caller got %d keep-alive OPTIONS (want %d at least), %d re-INVITEs, %d BYEs (want 1 each)",
			keepAlives, want, reinvites, byes)
	}

	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	rec := readCDRs(t, cdr)[0]
	if rec["status"] != 200.0 || rec["reason"] != "callee hung up" {
		t.Errorf("CDR status %v reason %v", rec["status"], rec["reason"])
	}
	a, b := leg(t, rec, 0), leg(t, rec, 1)
	remote, err := netip.ParseAddrPort(fmt.Sprint(a["Remote"]))
	if err != nil || remote.Addr() != nat.RouterAddr {
		t.Errorf("the caller's leg latched %v, want the router's public address %s", a["Remote"], nat.RouterAddr)
	}
	// Each SIPp plays its pcap (236 packets) twice: before and after the
	// re-INVITE.
	relayedBothWays(t, a, b, 400)
	got := nftCounter(t, nat.Caller)
	if out := num(a, "PacketsOut"); got < 400 || float64(got) < out*0.99 {
		t.Errorf("the caller's host got %d RTP packets of the %v edged sent it", got, out)
	}
	t.Logf("caller %s:%d (media %d) behind NAT; edged saw %s; %d keep-alives; %d RTP packets reached the caller",
		priv, callerPort, callerMedia, remote, keepAlives, got)
	if t.Failed() {
		t.Logf("caller received:\n%s\nCDR: %v", strings.Join(caller.received(t), "\n"), rec)
	}
}

// natForgets checks the lab: a binding the NAT made is usable at once and
// gone after natIdleSecs and a margin, so the keep-alives are what keeps
// the call's reachable.
func natForgets(t *testing.T, nat *netnstest.NAT) {
	t.Helper()
	var in, out *net.UDPConn
	var err error
	nat.Caller.Do(t, func() { in, err = net.ListenUDP("udp4", &net.UDPAddr{IP: nat.PrivateAddr.AsSlice()}) })
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	nat.Public.Do(t, func() { out, err = net.ListenUDP("udp4", &net.UDPAddr{IP: nat.PublicAddr.AsSlice()}) })
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := in.WriteToUDPAddrPort([]byte("ping"), out.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = out.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, mapped, err := out.ReadFromUDPAddrPort(buf)
	if err != nil || mapped.Addr().Unmap() != nat.RouterAddr {
		t.Fatalf("the lab's NAT: ping arrived from %v (%v), want %s", mapped, err, nat.RouterAddr)
	}
	reply := func() bool {
		_, _ = out.WriteToUDPAddrPort([]byte("pong"), mapped)
		_ = in.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err := in.ReadFromUDPAddrPort(buf)
		return err == nil
	}
	if !reply() {
		t.Fatal("the lab's NAT does not let an answer back in")
	}
	time.Sleep(time.Duration(natIdleSecs)*time.Second + 1500*time.Millisecond)
	if reply() {
		t.Fatalf("the lab's NAT kept an idle binding longer than %d s: the test would prove nothing about keep-alives", natIdleSecs)
	}
}

// nftCounter reads the packets of the umtest table's one counter in ns.
func nftCounter(t *testing.T, ns netnstest.NS) int {
	t.Helper()
	return nftCounters(t, ns)[0]
}
