package config

import (
	"fmt"
	"net/netip"
)

// socket is one (protocol, address, port) that a setting makes edged bind.
type socket struct {
	key   string     // config key that asks for the port
	proto string     // "TCP" or "UDP"
	addr  netip.Addr // zero Addr = any address
	port  int
}

func (s socket) where() string {
	if !s.addr.IsValid() {
		return "every address"
	}
	return s.addr.String()
}

// overlap reports whether binding a and b to the same port and protocol
// would collide. An IPv4 wildcard covers all IPv4 addresses; the IPv6
// wildcard covers everything, since Go listens dual-stack on "::".
func overlap(a, b netip.Addr) bool {
	if !a.IsValid() || !b.IsValid() || a == b {
		return true
	}
	covers := func(w, x netip.Addr) bool { return w.IsUnspecified() && (w.Is6() || x.Is4()) }
	return covers(a, b) || covers(b, a)
}

// sockets lists what the SIP listeners and the admin server would bind.
func (v *validator) sockets(listen []netip.Addr, adm *endpoint) []socket {
	s := v.c.SIP
	var out []socket
	for _, a := range listen {
		if s.Mode.UsesTCP() && s.TCPPort >= 1 && s.TCPPort <= 65535 {
			out = append(out, socket{"sip.tcp_port", "TCP", a, s.TCPPort})
			if s.UDP {
				out = append(out, socket{"sip.tcp_port", "UDP", a, s.TCPPort})
			}
		}
		if s.Mode.UsesTLS() && s.TLSPort >= 1 && s.TLSPort <= 65535 {
			out = append(out, socket{"sip.tls_port", "TCP", a, s.TLSPort})
		}
	}
	if adm != nil {
		if adm.addrs == nil {
			out = append(out, socket{"admin.listen", "TCP", netip.Addr{}, adm.port})
		}
		for _, a := range adm.addrs {
			out = append(out, socket{"admin.listen", "TCP", a, adm.port})
		}
	}
	return out
}

// conflicts reports ports used twice and ports inside the media range.
func (v *validator) conflicts(listen []netip.Addr, adm *endpoint) {
	socks := v.sockets(listen, adm)
	type pair struct{ a, b string }
	seen := map[pair]bool{}
	for j, b := range socks {
		for _, a := range socks[:j] {
			if a.key == b.key || a.proto != b.proto || a.port != b.port || !overlap(a.addr, b.addr) || seen[pair{a.key, b.key}] {
				continue
			}
			seen[pair{a.key, b.key}] = true
			v.addf(b.key, ErrConflict, "%s port %d on %s is also used by %s", b.proto, b.port, b.where(), a.key)
		}
	}

	m := v.c.Media
	if m.PortMin < 1024 || m.PortMin > 65534 || m.PortMax > 65535 || m.PortMax <= m.PortMin {
		return // media() already reported the range
	}
	inRange := map[string]bool{}
	for _, s := range socks {
		if s.port >= m.PortMin && s.port <= m.PortMax && !inRange[s.key] {
			inRange[s.key] = true
			v.add(s.key, fmt.Errorf("%w: port %d lies inside the media range %d..%d (media.port_min..media.port_max)",
				ErrConflict, s.port, m.PortMin, m.PortMax))
		}
	}
}
