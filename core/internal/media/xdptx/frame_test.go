package xdptx

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestBuildUDP6 parses frames BuildUDP6 built back field by field and
// checks the UDP checksum with a plain RFC 1071 sum of its own over the
// RFC 8200 pseudo-header, for payloads of odd and even lengths, the
// traffic class a DSCP byte, and a payload whose checksum computes to 0
// (sent as 0xffff: 0 is not allowed over IPv6).
func TestBuildUDP6(t *testing.T) {
	dstMAC, srcMAC := [6]byte{2, 0, 0, 0, 0, 0xb}, [6]byte{2, 0, 0, 0, 0, 0xa}
	src := netip.MustParseAddrPort("[fd00:1::1]:30000")
	dst := netip.MustParseAddrPort("[fd00:2::2]:20001")
	// A payload that ends in the complement of what the rest sums to
	// makes the checksum 0.
	zero := []byte{0x80, 0, 0xde, 0xad, 0, 0}
	c := checksum6(src.Addr(), dst.Addr(), udpOf(src.Port(), dst.Port(), zero))
	binary.BigEndian.PutUint16(zero[4:], c)
	if checksum6(src.Addr(), dst.Addr(), udpOf(src.Port(), dst.Port(), zero)) != 0 {
		t.Fatal("the test's payload does not sum to a checksum of 0")
	}
	tests := []struct {
		name        string
		givePayload []byte
		giveTOS     uint8
	}{
		{name: "empty", givePayload: nil},
		{name: "one byte", givePayload: []byte{0xff}, giveTOS: 0xb8},
		{name: "rtp 172", givePayload: bytes.Repeat([]byte{0x80, 0x11, 0x42}, 172/3+1)[:172], giveTOS: 0x88},
		{name: "odd 173", givePayload: bytes.Repeat([]byte{7, 0xfe}, 87)[:173], giveTOS: 0xff},
		{name: "checksum 0", givePayload: zero},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, FrameSize)
			n := BuildUDP6(b, dstMAC, srcMAC, src, dst, tt.giveTOS, tt.givePayload)
			if n != HeaderLen6+len(tt.givePayload) {
				t.Fatalf("length %d, want %d", n, HeaderLen6+len(tt.givePayload))
			}
			f := b[:n]
			if !bytes.Equal(f[0:6], dstMAC[:]) || !bytes.Equal(f[6:12], srcMAC[:]) || binary.BigEndian.Uint16(f[12:]) != 0x86dd {
				t.Errorf("Ethernet header % x", f[:14])
			}
			ip := f[14:54]
			if v := ip[0] >> 4; v != 6 {
				t.Errorf("version %d", v)
			}
			if tc := ip[0]<<4 | ip[1]>>4; tc != tt.giveTOS {
				t.Errorf("traffic class %#02x, want %#02x", tc, tt.giveTOS)
			}
			if fl := binary.BigEndian.Uint32(ip[0:]) & 0xfffff; fl != 0 {
				t.Errorf("flow label %#x", fl)
			}
			if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != 8+len(tt.givePayload) {
				t.Errorf("payload length %d, want %d", pl, 8+len(tt.givePayload))
			}
			if ip[6] != 17 || ip[7] != 64 {
				t.Errorf("next header %d, hop limit %d", ip[6], ip[7])
			}
			if s, d := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])); s != src.Addr() || d != dst.Addr() {
				t.Errorf("from %s to %s", s, d)
			}
			u := f[54:]
			if sp, dp, ul := binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:]), int(binary.BigEndian.Uint16(u[4:])); sp != src.Port() || dp != dst.Port() || ul != len(u) {
				t.Errorf("UDP ports %d to %d, length %d (want %d)", sp, dp, ul, len(u))
			}
			if !bytes.Equal(u[8:], tt.givePayload) {
				t.Errorf("payload changed")
			}
			got := binary.BigEndian.Uint16(u[6:])
			want := checksum6(src.Addr(), dst.Addr(), udpOf(src.Port(), dst.Port(), tt.givePayload))
			if want == 0 {
				want = 0xffff
			}
			if got != want {
				t.Errorf("UDP checksum %#04x, want %#04x", got, want)
			}
		})
	}
}

// udpOf is a UDP header (checksum 0) and payload.
func udpOf(sp, dp uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sp)
	binary.BigEndian.PutUint16(u[2:], dp)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload))) //nolint:gosec // small
	return append(u, payload...)
}

// checksum6 is the UDP checksum over IPv6 of u (its checksum field 0), a
// word at a time, as RFC 1071 and RFC 8200 section 8.1 put it: nothing
// shared with the builder's sum.
func checksum6(src, dst netip.Addr, u []byte) uint16 {
	var pseudo []byte
	s, d := src.As16(), dst.As16()
	pseudo = append(pseudo, s[:]...)
	pseudo = append(pseudo, d[:]...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(u))) //nolint:gosec // small
	pseudo = append(pseudo, 0, 0, 0, 17)
	all := append(pseudo, u...)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var acc uint32
	for i := 0; i < len(all); i += 2 {
		acc += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}
