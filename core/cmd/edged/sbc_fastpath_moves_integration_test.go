//go:build integration

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/netnstest"
)

// The fast path through the whole SBC when a peer's media moves mid-call:
// the callee re-INVITEs to another port, the caller's NAT rebinds. Each
// with fast_path = tc and off, where everything but the path must come out
// the same. The calls play a 100-packet cut of SIPp's G.711 pcap (3 s) per
// stream, to stay short.

const (
	cutPackets = 100  // packets of a cut (30 ms each)
	cutPlayMS  = 3300 // covers one play of a cut
)

// TestIntegrationSBCFastPathReinvite: the callee re-INVITEs with its
// media on another port and goes on with its stream (same SSRC) from
// there. The entries come out at the offer; the callee's first packet from
// the new port is not the latched source, so the kernel passes it up and
// the leg re-latches there (the address its SDP names); then the kernel
// carries the call again, towards the new port. The CDR counts every
// packet both peers sent; the callee's old port gets nothing after the
// move.
func TestIntegrationSBCFastPathReinvite(t *testing.T) {
	fastPathAvailable(t)
	for _, mode := range []string{"tc", "off"} {
		t.Run("fast_path="+mode, func(t *testing.T) { fastPathReinvite(t, mode) })
	}
}

func fastPathReinvite(t *testing.T, mode string) {
	t.Helper()
	l := newNSLab(t)
	e := startNSEdged(t, l, mode, "")
	calleeMedia, callerMedia := freePort(t), freePort(t)
	moved := calleeMedia + 2
	countRTP(t, netnstest.NS(l.caller), callerMedia)
	countRTP(t, netnstest.NS(l.callee), calleeMedia, moved)

	cut := cutPcap(t, 0, cutPackets, 0)
	callee := startSIPpIn(t, l.callee, "callee", "-sf", fpScenario(t, "sbc_uas_move.xml", "{{PCAP}}", cut, "{{PLAY_MS}}", strconv.Itoa(cutPlayMS)),
		"-t", "t1", "-i", l.calleeIP, "-p", strconv.Itoa(e.calleePort), "-mi", l.calleeIP, "-mp", strconv.Itoa(calleeMedia), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	caller := startSIPpIn(t, l.caller, "caller", fmt.Sprintf("%s:%d", l.aIP, e.lb.SIPPort),
		"-sf", fpScenario(t, "sbc_uac_nat.xml", "/usr/share/sip-tester/g711a.pcap", cut), "-t", "u1",
		"-i", l.callerIP, "-p", strconv.Itoa(freePort(t)), "-mi", l.callerIP, "-mp", strconv.Itoa(callerMedia),
		"-s", "1001", "-m", "1", "-aa")

	want := wantPath(mode)
	first := netip.AddrPortFrom(netip.MustParseAddr(l.calleeIP), uint16(calleeMedia)) //nolint:gosec // a port
	then := netip.AddrPortFrom(first.Addr(), uint16(moved))                           //nolint:gosec // a port
	e.waitLegs(t, "the callee latched at "+first.String()+" on the "+want+" path", func(a, b legView) bool {
		return b.Remote == first && a.Path == want && b.Path == want
	})
	var at [2]legView
	e.waitLegs(t, "the callee re-latched at "+then.String()+" on the "+want+" path", func(a, b legView) bool {
		at = [2]legView{a, b}
		return b.Remote == then && a.Path == want && b.Path == want
	})
	oldAtMove := nftCounters(t, netnstest.NS(l.callee))[0]
	movedEntries(t, mode, e)
	caller.wait(t, 30*time.Second)
	callee.wait(t, 10*time.Second)

	a, b := e.cdrLegs(t)
	// Each peer played the cut twice: before and after the move.
	exactCounts(t, a, b, 2*cutPackets, 2*cutPackets)
	kernelCarried(t, mode, e.hc, e.admin, a, b)
	kernelAfter(t, mode, at, a, b)
	got := nftCounters(t, netnstest.NS(l.callee))
	// Before the move the callee got the caller's first play at its first
	// port (and what of the second left before the callee's first packet
	// from its new port); after it, nothing there: all at the new port.
	if old, now := got[0], got[1]; old < cutPackets || old > oldAtMove+1 || old+now < 2*cutPackets-2 {
		t.Errorf("the callee got %d packets at its first port (%d when the move showed on /calls), %d at the new one; want %d, then the rest of %d at the new one",
			old, oldAtMove, now, cutPackets, 2*cutPackets)
	}
	if got := nftCounters(t, netnstest.NS(l.caller))[0]; got < 2*cutPackets-2 {
		t.Errorf("the caller got %d of the callee's %d packets", got, 2*cutPackets)
	}
	t.Logf("fast_path=%s: callee's ports got %v; the caller %v", mode, got, nftCounters(t, netnstest.NS(l.caller)))
}

// TestIntegrationSBCFastPathNATRebind: the caller is behind a masquerading
// router (netnstest's NAT lab, fully random ports). Mid-call the router
// forgets the mapping of the caller's media (conntrack -D, what a reboot,
// a full table or an idle timeout do), so the caller's next packets leave
// from a new public port. The kernel passes them up (not the latched
// source), the leg re-latches in userspace, is offloaded again from the new
// source, and media flows both ways to the end.
//
// The caller's stream goes on across the rebind (the same SSRC, the next
// sequence numbers, after a gap of gapMS in which the mapping goes), and
// the rebind comes after the learning window (latch_window 1 s): the leg
// follows a NAT that rebinds at any time of the call, as R-SBC-2's
// re-latch asks (doc.go: the same address, the latched stream going on,
// its old port quiet).
func TestIntegrationSBCFastPathNATRebind(t *testing.T) {
	fastPathAvailable(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Fatalf("conntrack is required (Debian conntrack, in TEST_DEBS): %v", err)
	}
	for _, mode := range []string{"tc", "off"} {
		t.Run("fast_path="+mode, func(t *testing.T) { fastPathNATRebind(t, mode) })
	}
}

func fastPathNATRebind(t *testing.T, mode string) {
	t.Helper()
	nat := netnstest.NewNAT(t)
	callee := netnstest.NS(fmt.Sprintf("um-sb-%04x", rand.IntN(1<<16)))
	netnstest.Add(t, callee)
	x := 16 + rand.IntN(200)
	l := nsLab{caller: string(nat.Caller), edged: string(nat.Public), callee: string(callee),
		callerIP: nat.RouterAddr.String(), aIP: nat.PublicAddr.String(),
		calleeIP: fmt.Sprintf("10.%d.2.2", x), bIP: fmt.Sprintf("10.%d.2.1", x)}
	vethHost(t, l.edged, "eb", l.callee, l.calleeIP, l.bIP)
	e := startNSEdged(t, l, mode, "latch_window = \"1s\"\n")
	calleeMedia, callerMedia := freePort(t), freePort(t)
	countRTP(t, nat.Caller, callerMedia)
	countRTP(t, callee, calleeMedia)

	priv := nat.PrivateAddr.String()
	rebind := fmt.Sprintf("ip netns exec %s conntrack -D -p udp --orig-src %s --orig-port-src %d", nat.Router, priv, callerMedia)
	const gapMS = 500
	calleeSIPp := startSIPpIn(t, l.callee, "callee", "-sf", fpScenario(t, "sbc_uas_play2.xml", "{{PCAP}}", cutPcap(t, 0, cutPackets, 0), "{{PLAY_MS}}", strconv.Itoa(cutPlayMS)),
		"-t", "t1", "-i", l.calleeIP, "-p", strconv.Itoa(e.calleePort), "-mi", l.calleeIP, "-mp", strconv.Itoa(calleeMedia), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	callerSIPp := startSIPpIn(t, l.caller, "caller", fmt.Sprintf("%s:%d", l.aIP, e.lb.SIPPort),
		"-sf", fpScenario(t, "sbc_uac_rebind.xml", "{{PCAP}}", cutPcap(t, 0, cutPackets, 0), "{{PCAP2}}", cutPcap(t, cutPackets, cutPackets, 0),
			"{{PLAY_MS}}", strconv.Itoa(cutPlayMS), "{{GAP_MS}}", strconv.Itoa(gapMS), "{{REBIND}}", rebind),
		"-t", "u1", "-i", priv, "-p", strconv.Itoa(freePort(t)), "-mi", priv, "-mp", strconv.Itoa(callerMedia), "-s", "1001", "-m", "1")

	want := wantPath(mode)
	var before netip.AddrPort
	e.waitLegs(t, "the caller latched at the router on the "+want+" path", func(a, b legView) bool {
		before = a.Remote
		return a.Remote.Addr() == nat.RouterAddr && a.Path == want && b.Path == want
	})
	var at [2]legView
	e.waitLegs(t, "the caller re-latched at another port of the router on the "+want+" path", func(a, b legView) bool {
		at = [2]legView{a, b}
		return a.Remote.Addr() == nat.RouterAddr && a.Remote != before && a.Path == want && b.Path == want
	})
	movedEntries(t, mode, e)
	callerSIPp.wait(t, 30*time.Second)
	calleeSIPp.wait(t, 10*time.Second)

	a, b := e.cdrLegs(t)
	if s := num(a, "Strays"); s != 0 {
		// The new mapping's first packets came less than 100 ms after
		// the old one's last (SIPp ran the conntrack command late, in
		// the second stream): the leg waits that long before it follows.
		t.Errorf("%v of the caller's packets were dropped as strays", s)
	}
	// Every packet the caller sent reached edged (the old mapping went in
	// a gap of the caller's); every packet the callee sent left edged.
	exactCounts(t, a, b, 2*cutPackets, 2*cutPackets)
	kernelCarried(t, mode, e.hc, e.admin, a, b)
	kernelAfter(t, mode, at, a, b)
	if mode == "tc" {
		if n, _ := scrape(t, e.hc, e.admin, `umedge_media_fastpath_packets_total{verdict="wrong_source"}`); n < 1 {
			t.Error("the kernel passed up no packet from the caller's new source")
		}
	}
	// Towards the caller, what edged sent to the old mapping between the
	// rebind and the caller's first packet from the new one is lost: the
	// gap (500 ms, 17 packets) and SIPp's lateness; allow 1 s.
	toCaller, toCallee := nftCounters(t, nat.Caller)[0], nftCounters(t, callee)[0]
	if lost := 2*cutPackets - toCaller; lost < 0 || lost > 1000/30 {
		t.Errorf("the caller got %d of the callee's %d packets", toCaller, 2*cutPackets)
	}
	if toCallee < 2*cutPackets-2 {
		t.Errorf("the callee got %d of the caller's %d packets", toCallee, 2*cutPackets)
	}
	t.Logf("fast_path=%s: caller latched %s, then %s; the caller got %d of %d packets (lost at the rebind: %d), the callee %d",
		mode, before, at[0].Remote, toCaller, 2*cutPackets, 2*cutPackets-toCaller, toCallee)
}

func wantPath(mode string) string {
	if mode == "tc" {
		return "kernel"
	}
	return "userspace"
}

// legView is one media leg of a call as /calls shows it.
type legView struct {
	Remote                                            netip.AddrPort
	Path                                              string
	PacketsIn, PacketsKernel, PacketsLatchedUserspace float64
}

// waitLegs polls /calls until the one call's legs satisfy cond.
func (e *nsEdged) waitLegs(t *testing.T, what string, cond func(a, b legView) bool) {
	t.Helper()
	waitFor(t, 20*time.Second, what, func() bool {
		legs, ok := callLegs(e.hc, e.admin)
		return ok && cond(legs[0], legs[1])
	})
}

func callLegs(hc *http.Client, admin string) ([2]legView, bool) {
	var calls []struct {
		Media struct{ Legs []legView } `json:"media"`
	}
	r, err := hc.Get(admin + "/calls")
	if err != nil {
		return [2]legView{}, false
	}
	defer r.Body.Close()
	if json.NewDecoder(r.Body).Decode(&calls) != nil || len(calls) != 1 || len(calls[0].Media.Legs) != 2 {
		return [2]legView{}, false
	}
	return [2]legView{calls[0].Media.Legs[0], calls[0].Media.Legs[1]}, true
}

// cdrLegs waits for the one CDR and returns its legs' media counters.
func (e *nsEdged) cdrLegs(t *testing.T) (a, b map[string]any) {
	t.Helper()
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(e.cdr); return err == nil && len(readCDRs(t, e.cdr)) == 1 })
	rec := readCDRs(t, e.cdr)[0]
	return leg(t, rec, 0), leg(t, rec, 1)
}

// exactCounts: the CDR counts what each peer sent, in and out.
func exactCounts(t *testing.T, a, b map[string]any, fromCaller, fromCallee float64) {
	t.Helper()
	for _, d := range []struct {
		name    string
		in, out map[string]any
		sent    float64
	}{{"caller → callee", a, b, fromCaller}, {"callee → caller", b, a, fromCallee}} {
		if in, out := num(d.in, "PacketsIn"), num(d.out, "PacketsOut"); in != d.sent || out != d.sent {
			t.Errorf("%s: CDR %v packets in, %v out; the peer sent %v", d.name, in, out, d.sent)
		}
	}
}

// kernelAfter: with the fast path on, the kernel carried ≥ 99 % of what
// came in after the moment at (the move seen on /calls, both legs back on
// the kernel path) to the end of the call (the CDR's legs a and b).
func kernelAfter(t *testing.T, mode string, at [2]legView, a, b map[string]any) {
	t.Helper()
	in := num(a, "PacketsIn") + num(b, "PacketsIn") - at[0].PacketsIn - at[1].PacketsIn
	kernel := num(a, "PacketsKernel") + num(b, "PacketsKernel") - at[0].PacketsKernel - at[1].PacketsKernel
	switch {
	case in < cutPackets/2:
		t.Errorf("only %v packets came in after the move: the test proves little", in)
	case mode == "tc" && kernel < 0.99*in:
		t.Errorf("after the move the kernel carried %v of %v packets, want ≥ 99 %%", kernel, in)
	case mode == "off" && kernel != 0:
		t.Errorf("fast path off, yet the kernel carried %v packets after the move", kernel)
	}
	t.Logf("after the move: %v of %v packets by the kernel", kernel, in)
}

// movedEntries, while the call is up after its media moved: with the fast
// path on, its entries were taken out of the kernel (at the offer, at the
// re-latch) and put in again; off, never.
func movedEntries(t *testing.T, mode string, e *nsEdged) {
	t.Helper()
	offloads, _ := scrape(t, e.hc, e.admin, "umedge_media_fastpath_offloads_total")
	removals, _ := scrape(t, e.hc, e.admin, "umedge_media_fastpath_removals_total")
	if mode == "tc" && (offloads < 2 || removals < 1) || mode == "off" && offloads+removals != 0 {
		t.Errorf("after the move the call was put on the kernel path %v times and taken off %v times", offloads, removals)
	}
	t.Logf("after the move: offloaded %v times, removed %v times", offloads, removals)
}

// fpScenario writes testdata's SIPp scenario name with each old string of
// oldnew replaced by the next to a temporary file.
func fpScenario(t *testing.T, name string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "core", "cmd", "edged", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(oldnew...).Replace(string(b))
	if i := strings.Index(s, "=\"{{"); i >= 0 {
		t.Fatalf("%s: %s not filled in", name, s[i:i+20])
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// cutPcap writes n packets of SIPp's G.711 a-law pcap from packet from on
// (so a cut from n goes on with the stream of a cut of n from 0: the same
// SSRC, the next sequence numbers), with the RTP SSRC set to ssrc unless 0
// (and the UDP checksum updated, RFC 1624), and returns its path.
func cutPcap(t *testing.T, from, n int, ssrc uint32) string {
	t.Helper()
	b, err := os.ReadFile("/usr/share/sip-tester/g711a.pcap")
	if err != nil {
		t.Fatalf("SIPp's pcap (Debian sip-tester): %v", err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatal("g711a.pcap: not a little-endian Ethernet pcap")
	}
	out := append([]byte(nil), b[:24]...)
	for off, i := 24, 0; i < from+n; i++ {
		if off+16 > len(b) {
			t.Fatalf("g711a.pcap has %d packets, want %d", i, from+n)
		}
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		rec := append([]byte(nil), b[off:off+16+incl]...)
		off += 16 + incl
		if i < from {
			continue
		}
		pkt := rec[16:]
		if len(pkt) < 14+20+8+12 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 || pkt[23] != 17 {
			t.Fatalf("g711a.pcap packet %d: not IPv4 UDP", i)
		}
		udp := pkt[14+int(pkt[14]&0x0f)*4:]
		if ssrc != 0 {
			sum := uint32(^binary.BigEndian.Uint16(udp[6:]))
			for w := 16; w < 20; w += 2 { // RFC 1624: HC' = ~(~HC + ~m + m')
				sum += uint32(^binary.BigEndian.Uint16(udp[w:]))
			}
			binary.BigEndian.PutUint32(udp[16:], ssrc)
			for w := 16; w < 20; w += 2 {
				sum += uint32(binary.BigEndian.Uint16(udp[w:]))
			}
			for sum > 0xffff {
				sum = sum&0xffff + sum>>16
			}
			if binary.BigEndian.Uint16(udp[6:]) != 0 { // 0: no checksum
				binary.BigEndian.PutUint16(udp[6:], ^uint16(sum))
			}
		}
		out = append(out, rec...)
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("g711a-%d-%d-%x.pcap", from, n, ssrc))
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// countRTP makes ns count the UDP packets to each port, in order
// (nftCounters reads them).
func countRTP(t *testing.T, ns netnstest.NS, ports ...int) {
	t.Helper()
	var rules strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&rules, "\t\tudp dport %d counter\n", p)
	}
	ns.Exec(t, "table inet umtest {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n"+rules.String()+"\t}\n}\n", "nft", "-f", "-")
}

// nftCounters reads the packets of countRTP's counters in ns.
func nftCounters(t *testing.T, ns netnstest.NS) []int {
	t.Helper()
	var out []int
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(ns.Output(t, "nft", "list", "table", "inet", "umtest"), -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	if len(out) == 0 {
		t.Fatalf("no counters in %s", ns)
	}
	return out
}
