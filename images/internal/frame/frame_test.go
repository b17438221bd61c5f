package frame

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
)

// TestChecksumKnownHeader: the IPv4 header of the example on Wikipedia's
// "Internet checksum" page (checksum b861).
func TestChecksumKnownHeader(t *testing.T) {
	h, _ := hex.DecodeString("450000730000400040110000c0a80001c0a800c7")
	if got := Checksum(h, 0); got != 0xb861 {
		t.Fatalf("Checksum = %04x, want b861", got)
	}
	h[10], h[11] = 0xb8, 0x61
	if got := Checksum(h, 0); got != 0 {
		t.Fatalf("Checksum over a correct header = %04x, want 0", got)
	}
}

// TestUDPRoundTrip: a tagged datagram decodes to what was encoded, its
// UDP checksum verifies over the pseudo header, and a flipped header
// byte is refused.
func TestUDPRoundTrip(t *testing.T) {
	u := UDP{Src: netip.MustParseAddrPort("10.0.100.1:5070"), Dst: netip.MustParseAddrPort("10.0.100.2:5060"), ID: 0x1234, Payload: []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")}
	b := EncodeUDP(macB, macA, 100, u)
	if len(b) != 18+20+8+len(u.Payload) {
		t.Fatalf("frame length %d", len(b))
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.VLAN != 100 || f.Type != TypeIPv4 || !bytes.Equal(f.Src, macA) || !bytes.Equal(f.Dst, macB) || f.UDP == nil {
		t.Fatalf("Parse = %+v", f)
	}
	if f.UDP.Src != u.Src || f.UDP.Dst != u.Dst || f.UDP.ID != u.ID || !bytes.Equal(f.UDP.Payload, u.Payload) {
		t.Fatalf("UDP = %+v, want %+v", f.UDP, u)
	}
	ip := b[18:38]
	udp := b[38:]
	pseudo := append(append(append([]byte{}, ip[12:20]...), 0, 17), udp[4], udp[5])
	if Checksum(udp, sum16(pseudo)) != 0 {
		t.Error("UDP checksum does not verify")
	}
	untagged := EncodeUDP(macB, macA, 0, u)
	if f, err := Parse(untagged); err != nil || f.VLAN != 0 || f.UDP == nil {
		t.Errorf("untagged: %+v, %v", f, err)
	}
	b[18+8]++ // TTL
	if _, err := Parse(b); err == nil {
		t.Error("a header with a wrong checksum parsed")
	}
}

func TestARPRoundTrip(t *testing.T) {
	req := ARP{Op: ARPRequest, SenderMAC: macA, SenderIP: netip.MustParseAddr("10.0.100.1"), TargetIP: netip.MustParseAddr("10.0.100.2")}
	f, err := Parse(EncodeARP(100, req))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Dst, Broadcast) || f.VLAN != 100 || f.ARP == nil || f.ARP.Op != ARPRequest ||
		f.ARP.SenderIP != req.SenderIP || f.ARP.TargetIP != req.TargetIP || !bytes.Equal(f.ARP.SenderMAC, macA) {
		t.Fatalf("request = %+v %+v", f, f.ARP)
	}
	rep := ARP{Op: ARPReply, SenderMAC: macB, SenderIP: req.TargetIP, TargetMAC: macA, TargetIP: req.SenderIP}
	f, err = Parse(EncodeARP(0, rep))
	if err != nil || !bytes.Equal(f.Dst, macA) || f.ARP.Op != ARPReply || !bytes.Equal(f.ARP.TargetMAC, macA) {
		t.Fatalf("reply = %+v, %v", f, err)
	}
	if _, err := Parse(EncodeARP(0, rep)[:30]); err == nil {
		t.Error("a cut ARP parsed")
	}
}
