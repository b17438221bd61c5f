package xdptx

import (
	"encoding/binary"
	"net/netip"
)

// HeaderLen is the Ethernet, IPv4 and UDP headers in front of a payload;
// HeaderLen6 the Ethernet, IPv6 and UDP headers.
const (
	HeaderLen  = 14 + 20 + 8
	HeaderLen6 = 14 + 40 + 8
)

// BuildUDP4 writes into b an Ethernet frame from srcMAC to dstMAC carrying
// an IPv4 UDP datagram from src to dst with payload (TTL 64, DF, the TOS
// byte tos, the IPv4 header checksum computed, the UDP checksum computed
// unless noUDPSum) and returns its length. b must have room for
// HeaderLen+len(payload).
func BuildUDP4(b []byte, dstMAC, srcMAC [6]byte, src, dst netip.AddrPort, id uint16, tos uint8, payload []byte, noUDPSum bool) int {
	n := HeaderLen + len(payload)
	_ = b[n-1]
	putEther(b, dstMAC, srcMAC, 0x0800)
	ip := b[14:34]
	ulen := 8 + len(payload)
	ip[0], ip[1] = 0x45, tos
	binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen)) //nolint:gosec // ≤ a frame
	binary.BigEndian.PutUint16(ip[4:], id)
	ip[6], ip[7] = 0x40, 0 // DF
	ip[8], ip[9] = 64, 17
	ip[10], ip[11] = 0, 0
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip, 0)))
	u := b[34:n]
	putUDP(u, src.Port(), dst.Port(), payload)
	if !noUDPSum {
		// Pseudo-header: source, destination, protocol, UDP length.
		s := sum(ip[12:20], uint32(17)+uint32(ulen)) //nolint:gosec // ≤ a frame
		c := ^fold(sum(u, s))
		if c == 0 {
			c = 0xffff // 0 means "no checksum" over IPv4
		}
		binary.BigEndian.PutUint16(u[6:], c)
	}
	return n
}

// BuildUDP6 writes into b an Ethernet frame from srcMAC to dstMAC carrying
// an IPv6 UDP datagram from src to dst with payload (hop limit 64, the
// traffic class tos, flow label 0, no extension header, the UDP checksum
// computed: mandatory over IPv6, RFC 8200 section 8.1) and returns its
// length. b must have room for HeaderLen6+len(payload).
func BuildUDP6(b []byte, dstMAC, srcMAC [6]byte, src, dst netip.AddrPort, tos uint8, payload []byte) int {
	n := HeaderLen6 + len(payload)
	_ = b[n-1]
	putEther(b, dstMAC, srcMAC, 0x86dd)
	ip := b[14:54]
	ulen := 8 + len(payload)
	// Version 6, traffic class, flow label 0.
	ip[0], ip[1], ip[2], ip[3] = 0x60|tos>>4, tos<<4, 0, 0
	binary.BigEndian.PutUint16(ip[4:], uint16(ulen)) //nolint:gosec // ≤ a frame
	ip[6], ip[7] = 17, 64
	s16, d16 := src.Addr().As16(), dst.Addr().As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	u := b[54:n]
	putUDP(u, src.Port(), dst.Port(), payload)
	// Pseudo-header (RFC 8200 section 8.1): source, destination, UDP
	// length, next header.
	c := ^fold(sum(u, sum(ip[8:40], uint32(17)+uint32(ulen)))) //nolint:gosec // ≤ a frame
	if c == 0 {
		c = 0xffff // 0 is not a valid checksum over IPv6
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return n
}

// putEther writes an Ethernet header of type typ at b.
func putEther(b []byte, dstMAC, srcMAC [6]byte, typ uint16) {
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(b[12:], typ)
}

// putUDP writes into u (8+len(payload) bytes) a UDP header from port sp
// to dp, its checksum 0, and payload.
func putUDP(u []byte, sp, dp uint16, payload []byte) {
	binary.BigEndian.PutUint16(u[0:], sp)
	binary.BigEndian.PutUint16(u[2:], dp)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u))) //nolint:gosec // ≤ a frame
	u[6], u[7] = 0, 0
	copy(u[8:], payload)
}

// sum adds b as big-endian 16-bit words to s (RFC 1071), 8 bytes at a time.
func sum(b []byte, s uint32) uint32 {
	acc := uint64(s)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc += v >> 32
		acc += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc)
}

// fold folds a 32-bit one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s) //nolint:gosec // folded
}
