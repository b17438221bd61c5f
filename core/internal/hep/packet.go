package hep

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Proto is the IP protocol id chunk: the transport the message travelled on.
type Proto uint8

// The transports of SIP.
const (
	TCP Proto = 6
	UDP Proto = 17
	// TLS is IPPROTO_IDP, which Kamailio's siptrace and Homer use to say
	// "TLS" (the IP protocol is TCP, but then the collector could not
	// tell a decrypted message from a plain one).
	TLS Proto = 22
)

// Generic chunk types (vendor id 0) of the HEP3 specification.
const (
	chunkFamily      = 0x0001 // uint8: 2 IPv4, 10 IPv6
	chunkProto       = 0x0002 // uint8: IP protocol id
	chunkSrcIP4      = 0x0003
	chunkDstIP4      = 0x0004
	chunkSrcIP6      = 0x0005
	chunkDstIP6      = 0x0006
	chunkSrcPort     = 0x0007 // uint16
	chunkDstPort     = 0x0008 // uint16
	chunkTimeSec     = 0x0009 // uint32, seconds since the epoch
	chunkTimeUsec    = 0x000a // uint32, microseconds added to it
	chunkProtoType   = 0x000b // uint8: 1 SIP
	chunkAgentID     = 0x000c // uint32
	chunkAuthKey     = 0x000e // octets
	chunkPayload     = 0x000f // octets
	chunkCorrelation = 0x0011 // octets: the Call-ID for SIP
)

const (
	familyIPv4   = 2
	familyIPv6   = 10
	protoTypeSIP = 1
	headerLen    = 6 // "HEP3" and the total length
	chunkHdrLen  = 6 // vendor, type, length
	// MaxPacket is the largest HEP packet: its length field is 16 bits.
	MaxPacket = 65535
)

// Packet is one captured message and what the collector is told about it.
type Packet struct {
	Proto         Proto
	Src, Dst      netip.AddrPort
	Time          time.Time
	AgentID       uint32
	AuthKey       []byte // "" = no auth key chunk
	CorrelationID []byte // "" = no correlation id chunk
	Payload       []byte
}

// Append appends the HEPv3 encoding of p to b. Chunks go in the order
// sngrep's listener reads at fixed offsets (family, protocol, ports,
// timestamp, protocol type, agent id, addresses, auth key, payload); the
// correlation id comes after the payload, where readers that do not know
// it skip it. Addresses of mixed families are both sent as IPv6.
func Append(b []byte, p *Packet) ([]byte, error) {
	src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	v6 := !src.Is4() || !dst.Is4()
	ipLen := 4
	if v6 {
		ipLen = 16
	}
	size := headerLen + 2*(chunkHdrLen+1) + 2*(chunkHdrLen+2) + 2*(chunkHdrLen+4) + (chunkHdrLen + 1) + (chunkHdrLen + 4) +
		2*(chunkHdrLen+ipLen) + chunkHdrLen + len(p.Payload)
	if len(p.AuthKey) > 0 {
		size += chunkHdrLen + len(p.AuthKey)
	}
	if len(p.CorrelationID) > 0 {
		size += chunkHdrLen + len(p.CorrelationID)
	}
	if size > MaxPacket {
		return b, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	b = append(b, "HEP3"...)
	b = binary.BigEndian.AppendUint16(b, uint16(size))
	family := byte(familyIPv4)
	if v6 {
		family = familyIPv6
	}
	b = appendChunk(b, chunkFamily, family)
	b = appendChunk(b, chunkProto, byte(p.Proto))
	b = appendUint16(b, chunkSrcPort, p.Src.Port())
	b = appendUint16(b, chunkDstPort, p.Dst.Port())
	sec, usec := p.Time.Unix(), p.Time.Nanosecond()/1000
	b = appendUint32(b, chunkTimeSec, uint32(sec))
	b = appendUint32(b, chunkTimeUsec, uint32(usec))
	b = appendChunk(b, chunkProtoType, protoTypeSIP)
	b = appendUint32(b, chunkAgentID, p.AgentID)
	if v6 {
		s, d := src.As16(), dst.As16() // an IPv4 one as ::ffff:a.b.c.d
		b = appendChunk(b, chunkSrcIP6, s[:]...)
		b = appendChunk(b, chunkDstIP6, d[:]...)
	} else {
		s, d := src.As4(), dst.As4()
		b = appendChunk(b, chunkSrcIP4, s[:]...)
		b = appendChunk(b, chunkDstIP4, d[:]...)
	}
	if len(p.AuthKey) > 0 {
		b = appendChunk(b, chunkAuthKey, p.AuthKey...)
	}
	b = appendChunk(b, chunkPayload, p.Payload...)
	if len(p.CorrelationID) > 0 {
		b = appendChunk(b, chunkCorrelation, p.CorrelationID...)
	}
	return b, nil
}

func appendChunk(b []byte, typ uint16, value ...byte) []byte {
	b = binary.BigEndian.AppendUint16(b, 0) // generic vendor
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(chunkHdrLen+len(value)))
	return append(b, value...)
}

func appendUint16(b []byte, typ uint16, v uint16) []byte {
	var a [2]byte
	binary.BigEndian.PutUint16(a[:], v)
	return appendChunk(b, typ, a[:]...)
}

func appendUint32(b []byte, typ uint16, v uint32) []byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v)
	return appendChunk(b, typ, a[:]...)
}

// Decode reads one HEPv3 packet from the start of b and returns it with
// the number of bytes it took. Byte fields of the packet alias b. Chunks
// of other vendors and unknown types are skipped.
func Decode(b []byte) (Packet, int, error) {
	var p Packet
	if len(b) < headerLen || string(b[:4]) != "HEP3" {
		return p, 0, fmt.Errorf("%w: no HEP3 header", ErrMalformed)
	}
	total := int(binary.BigEndian.Uint16(b[4:6]))
	if total < headerLen || total > len(b) {
		return p, 0, fmt.Errorf("%w: length %d, have %d bytes", ErrMalformed, total, len(b))
	}
	var (
		family           byte
		src, dst         netip.Addr
		sport, dport     uint16
		sec, usec        uint32
		haveSec, payload bool
	)
	for rest := b[headerLen:total]; len(rest) > 0; {
		if len(rest) < chunkHdrLen {
			return p, 0, fmt.Errorf("%w: truncated chunk header", ErrMalformed)
		}
		vendor, typ := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:])
		n := int(binary.BigEndian.Uint16(rest[4:]))
		if n < chunkHdrLen || n > len(rest) {
			return p, 0, fmt.Errorf("%w: chunk 0x%04x length %d", ErrMalformed, typ, n)
		}
		v := rest[chunkHdrLen:n]
		rest = rest[n:]
		if vendor != 0 {
			continue
		}
		var err error
		switch typ {
		case chunkFamily:
			family, err = uint8Of(v)
		case chunkProto:
			var x byte
			x, err = uint8Of(v)
			p.Proto = Proto(x)
		case chunkSrcIP4, chunkSrcIP6:
			src, err = addrOf(v, typ == chunkSrcIP6)
		case chunkDstIP4, chunkDstIP6:
			dst, err = addrOf(v, typ == chunkDstIP6)
		case chunkSrcPort:
			sport, err = uint16Of(v)
		case chunkDstPort:
			dport, err = uint16Of(v)
		case chunkTimeSec:
			sec, err = uint32Of(v)
			haveSec = true
		case chunkTimeUsec:
			usec, err = uint32Of(v)
		case chunkAgentID:
			p.AgentID, err = uint32Of(v)
		case chunkAuthKey:
			p.AuthKey = v
		case chunkPayload:
			p.Payload, payload = v, true
		case chunkCorrelation:
			p.CorrelationID = v
		}
		if err != nil {
			return p, 0, fmt.Errorf("%w: chunk 0x%04x: %w", ErrMalformed, typ, err)
		}
	}
	if !payload {
		return p, 0, fmt.Errorf("%w: no payload chunk", ErrMalformed)
	}
	if family != familyIPv4 && family != familyIPv6 {
		return p, 0, fmt.Errorf("%w: ip family %d", ErrMalformed, family)
	}
	p.Src, p.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	if haveSec {
		p.Time = time.Unix(int64(sec), int64(usec)*1000)
	}
	return p, total, nil
}

type chunkSizeError struct{ got, want int }

func (e chunkSizeError) Error() string { return fmt.Sprintf("%d value bytes, want %d", e.got, e.want) }

func uint8Of(v []byte) (byte, error) {
	if len(v) != 1 {
		return 0, chunkSizeError{len(v), 1}
	}
	return v[0], nil
}

func uint16Of(v []byte) (uint16, error) {
	if len(v) != 2 {
		return 0, chunkSizeError{len(v), 2}
	}
	return binary.BigEndian.Uint16(v), nil
}

func uint32Of(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, chunkSizeError{len(v), 4}
	}
	return binary.BigEndian.Uint32(v), nil
}

func addrOf(v []byte, v6 bool) (netip.Addr, error) {
	if v6 {
		if len(v) != 16 {
			return netip.Addr{}, chunkSizeError{len(v), 16}
		}
		return netip.AddrFrom16([16]byte(v)), nil
	}
	if len(v) != 4 {
		return netip.Addr{}, chunkSizeError{len(v), 4}
	}
	return netip.AddrFrom4([4]byte(v)), nil
}
