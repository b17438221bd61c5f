//go:build integration

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// A fax through the SBC: a SIPp caller and a SIPp callee set up an audio
// call through edged, then the caller's gateway switches it to T.38 with a
// re-INVITE (audio at port 0, m=image udptl on a socket of the test's);
// UDPTL datagrams from the test's two sockets cross through edged both
// ways; BYE; the CDR carries the fax stream's counters.
func TestIntegrationSBCT38Fax(t *testing.T) {
	sipptest.Require(t)
	faxCaller, faxCallee := evenUDP(t), evenUDP(t)
	port := func(c *net.UDPConn) string { return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) }
	calleePort := freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, calleePort, cdr, ""))
	callee := uas(t, "callee", "sbc_uas_t38.xml", calleePort, "-set", "fax", port(faxCallee))
	caller := startSIPp(t, "caller", e.target("udp"), "-sf", sbcScenario("sbc_uac_t38.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1",
		"-set", "fax", port(faxCaller))

	// Once the re-INVITE is answered /calls shows the fax stream, with
	// edged's address on each leg.
	var toA, toB netip.AddrPort
	waitFor(t, 10*time.Second, "the T.38 stream on /calls", func() bool {
		calls := e.calls()
		if len(calls) != 1 {
			return false
		}
		m, _ := calls[0]["media"].(map[string]any)
		streams, _ := m["Streams"].([]any)
		if len(streams) != 1 {
			return false
		}
		st := streams[0].(map[string]any)
		if st["Proto"] != "udptl" || st["Index"] != 1.0 {
			return false
		}
		legs := st["Legs"].([]any)
		toA = netip.MustParseAddrPort(legs[0].(map[string]any)["Local"].(string))
		toB = netip.MustParseAddrPort(legs[1].(map[string]any)["Local"].(string))
		return true
	})
	const n = 20
	for seq := range n {
		// UDPTL: a sequence number, then an IFP packet; the first byte is
		// 0, which an RTP leg would take for STUN.
		pkt := []byte{byte(seq >> 8), byte(seq), 0x06, 0xc0, 0x01, 0x80, 0x00, 0x00, byte(seq)}
		for _, d := range []struct {
			from, to *net.UDPConn
			at, out  netip.AddrPort // edged's port sent to, and the one it relays from
		}{{faxCaller, faxCallee, toA, toB}, {faxCallee, faxCaller, toB, toA}} {
			if _, err := d.from.WriteToUDPAddrPort(pkt, d.at); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			d.to.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, src, err := d.to.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("datagram %d sent to edged's %s did not cross: %v", seq, d.at, err)
			}
			if !bytes.Equal(buf[:k], pkt) || netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) != d.out {
				t.Fatalf("datagram %d arrived as %x from %s, want %x from %s", seq, buf[:k], src, pkt, d.out)
			}
		}
	}
	caller.wait(t, 20*time.Second)
	callee.wait(t, 5*time.Second)

	// The callee was offered the fax on edged's address, the T38
	// attributes untouched, the audio declined.
	var offered string
	for _, m := range callee.received(t) {
		if strings.Contains(m, "m=image") {
			offered = m
		}
	}
	for _, want := range []string{"m=audio 0 ", fmt.Sprintf("m=image %d udptl t38", toB.Port()), "a=T38FaxRateManagement:transferredTCF", "a=T38FaxUdpEC:t38UDPRedundancy"} {
		if !strings.Contains(offered, want) {
			t.Errorf("the callee's re-INVITE lacks %q:\n%s", want, offered)
		}
	}

	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	rec := readCDRs(t, cdr)[0]
	if rec["status"] != 200.0 || rec["reason"] != "caller hung up" {
		t.Errorf("CDR status %v reason %v", rec["status"], rec["reason"])
	}
	m := rec["media"].(map[string]any)
	streams, _ := m["Streams"].([]any)
	if len(streams) != 1 {
		t.Fatalf("CDR streams %v, want the fax", m["Streams"])
	}
	fax := streams[0].(map[string]any)
	legs := fax["Legs"].([]any)
	a, b := legs[0].(map[string]any), legs[1].(map[string]any)
	if fax["Media"] != "image" || a["Codec"] != "t38" || a["Remote"] != faxCaller.LocalAddr().String() || b["Remote"] != faxCallee.LocalAddr().String() {
		t.Errorf("CDR fax stream %v", fax)
	}
	relayedBothWays(t, a, b, n)
}

// evenUDP is a UDP socket on an even port of 127.0.0.1, as a gateway's
// media port would be.
func evenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if c.LocalAddr().(*net.UDPAddr).Port%2 == 0 {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
	}
	t.Fatal("no even UDP port")
	return nil
}
