// Package frame encodes and decodes the few Ethernet frames the VLAN boot
// test exchanges with a VM over qemu's socket network: Ethernet II with
// an optional 802.1Q tag, carrying ARP (IPv4 over Ethernet) or IPv4/UDP.
// Nothing else is understood; Parse says so rather than guess.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// EtherTypes of the frames.
const (
	TypeIPv4 = 0x0800
	TypeARP  = 0x0806
	TypeVLAN = 0x8100 // IEEE 802.1Q tag
)

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

var (
	errShort     = errors.New("frame: too short")
	errMalformed = errors.New("frame: malformed")
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Frame is one decoded frame. VLAN is 0 for an untagged frame.
type Frame struct {
	Dst, Src net.HardwareAddr
	VLAN     int
	Type     uint16
	ARP      *ARP // Type == TypeARP
	UDP      *UDP // Type == TypeIPv4 and protocol UDP
}

// ARP is an IPv4-over-Ethernet ARP message.
type ARP struct {
	Op                 int
	SenderMAC          net.HardwareAddr
	SenderIP, TargetIP netip.Addr
	TargetMAC          net.HardwareAddr
}

// UDP is an IPv4 UDP datagram. ID is its IPv4 header's identification
// (what Parse read; EncodeUDP writes it too).
type UDP struct {
	Src, Dst netip.AddrPort
	ID       uint16
	Payload  []byte
}

// Ether returns an Ethernet header, tagged with vlan unless it is 0.
func Ether(dst, src net.HardwareAddr, vlan int, typ uint16) []byte {
	b := append(append([]byte{}, dst...), src...)
	if vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, TypeVLAN)
		b = binary.BigEndian.AppendUint16(b, uint16(vlan&0x0fff)) // PCP 0, DEI 0
	}
	return binary.BigEndian.AppendUint16(b, typ)
}

// EncodeARP returns a whole ARP frame; a request goes to broadcast.
func EncodeARP(vlan int, a ARP) []byte {
	dst := a.TargetMAC
	target := a.TargetMAC
	if a.Op == ARPRequest {
		dst, target = Broadcast, make(net.HardwareAddr, 6)
	}
	b := Ether(dst, a.SenderMAC, vlan, TypeARP)
	b = binary.BigEndian.AppendUint16(b, 1) // hardware: Ethernet
	b = binary.BigEndian.AppendUint16(b, TypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, uint16(a.Op))
	s4, t4 := a.SenderIP.As4(), a.TargetIP.As4()
	b = append(b, a.SenderMAC...)
	b = append(b, s4[:]...)
	b = append(b, target...)
	return append(b, t4[:]...)
}

// EncodeUDP returns a whole IPv4/UDP frame (TTL 64, DF, checksums set).
func EncodeUDP(dst, src net.HardwareAddr, vlan int, u UDP) []byte {
	const ipHeader, udpHeader = 20, 8
	total := ipHeader + udpHeader + len(u.Payload)
	ip := make([]byte, ipHeader, total)
	ip[0] = 0x45 // version 4, 5 words
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint16(ip[4:], u.ID)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment
	ip[8], ip[9] = 64, 17                      // TTL, UDP
	s4, d4 := u.Src.Addr().As4(), u.Dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip, 0))

	udp := make([]byte, udpHeader, udpHeader+len(u.Payload))
	binary.BigEndian.PutUint16(udp[0:], u.Src.Port())
	binary.BigEndian.PutUint16(udp[2:], u.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpHeader+len(u.Payload)))
	udp = append(udp, u.Payload...)
	// The pseudo header: addresses, protocol, UDP length.
	pseudo := append(append(append([]byte{}, s4[:]...), d4[:]...), 0, 17, udp[4], udp[5])
	sum := Checksum(udp, sum16(pseudo))
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	return append(append(Ether(dst, src, vlan, TypeIPv4), ip...), udp...)
}

// sum16 is the one's complement sum of b's 16-bit words, not folded.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// Checksum is the Internet checksum (RFC 1071) of b, with initial the
// sum of a pseudo header (0 for none).
func Checksum(b []byte, initial uint32) uint16 {
	s := initial + sum16(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Parse decodes b. Frames of other kinds are returned with only the
// Ethernet fields set; malformed ARP and IPv4 are errors.
func Parse(b []byte) (*Frame, error) {
	if len(b) < 14 {
		return nil, errShort
	}
	f := &Frame{Dst: net.HardwareAddr(b[0:6]), Src: net.HardwareAddr(b[6:12]), Type: binary.BigEndian.Uint16(b[12:])}
	b = b[14:]
	if f.Type == TypeVLAN {
		if len(b) < 4 {
			return nil, errShort
		}
		f.VLAN = int(binary.BigEndian.Uint16(b) & 0x0fff)
		f.Type = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	var err error
	switch f.Type {
	case TypeARP:
		f.ARP, err = parseARP(b)
	case TypeIPv4:
		f.UDP, err = parseUDP(b)
	}
	return f, err
}

func parseARP(b []byte) (*ARP, error) {
	if len(b) < 28 {
		return nil, errShort
	}
	if binary.BigEndian.Uint16(b) != 1 || binary.BigEndian.Uint16(b[2:]) != TypeIPv4 || b[4] != 6 || b[5] != 4 {
		return nil, fmt.Errorf("%w: ARP for other than IPv4 over Ethernet: % x", errMalformed, b[:6])
	}
	return &ARP{
		Op:        int(binary.BigEndian.Uint16(b[6:])),
		SenderMAC: net.HardwareAddr(b[8:14]), SenderIP: netip.AddrFrom4([4]byte(b[14:18])),
		TargetMAC: net.HardwareAddr(b[18:24]), TargetIP: netip.AddrFrom4([4]byte(b[24:28])),
	}, nil
}

// parseUDP returns the UDP datagram of an IPv4 packet, nil for another
// protocol or a fragment.
func parseUDP(b []byte) (*UDP, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return nil, fmt.Errorf("%w: not an IPv4 header", errMalformed)
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || total > len(b) {
		return nil, fmt.Errorf("%w: IPv4 header length %d, total %d, have %d", errMalformed, ihl, total, len(b))
	}
	if Checksum(b[:ihl], 0) != 0 {
		return nil, fmt.Errorf("%w: bad IPv4 header checksum", errMalformed)
	}
	if b[9] != 17 || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return nil, nil
	}
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	u := b[ihl:total]
	if len(u) < 8 || int(binary.BigEndian.Uint16(u[4:])) > len(u) || binary.BigEndian.Uint16(u[4:]) < 8 {
		return nil, fmt.Errorf("%w: bad UDP length", errMalformed)
	}
	u = u[:binary.BigEndian.Uint16(u[4:])]
	return &UDP{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:])),
		ID:      binary.BigEndian.Uint16(b[4:]),
		Payload: u[8:],
	}, nil
}
