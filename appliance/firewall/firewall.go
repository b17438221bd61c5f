// Package firewall generates the appliance's host firewall from the edged
// configuration and installs it with nftables over netlink.
//
// The ruleset is one table, inet umedge, with one input chain whose policy
// is drop. It accepts established and related traffic, loopback, the ICMP
// and ICMPv6 messages a host needs (neighbour discovery above all), and then
// one group of rules per listener group of the config, the way Exchange's
// installer created one inbound rule per UM listener (um-spec R-PORT-5). A
// group whose listeners the config does not have is absent.
//
// Every value that reaches a rule is typed (an address, a port), never text
// from the config, so no config value can change the ruleset's structure:
// over netlink there is no syntax to break, and String prints only
// addresses, numbers and the package's own words.
package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/umedge/umedge/core/config"
)

// ErrListen means a listen address the ruleset cannot be made from; the
// config's validation refuses such values before they get here.
var ErrListen = errors.New("firewall: unusable listen address")

// Table and Chain name what Apply installs: table inet umedge, chain input.
const (
	Table = "umedge"
	Chain = "input"
)

// Proto is a transport protocol a listener rule matches.
type Proto uint8

// The protocols, with their IP protocol numbers.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	if p == TCP {
		return "tcp"
	}
	return "udp"
}

// Ruleset is the whole input chain: the fixed base rules, then Groups.
type Ruleset struct {
	Groups []Group
}

// Group is the rules of one listener group, e.g. the Call Router's SIP.
type Group struct {
	Name  string // e.g. "umedge call-router"; each rule's comment starts with it
	Rules []Listener
}

// Listener is one accept rule: traffic to Addr (any address when invalid;
// the IPv4 or IPv6 wildcard matches that family only) on ports
// PortMin..PortMax of Proto.
type Listener struct {
	Proto            Proto
	Addr             netip.Addr
	PortMin, PortMax uint16
	Key              string // the config key that opens it, e.g. "sip.tcp_port"
}

// comment is what the rule says about itself: its group and the config
// key that opens it, so an operator reading `nft list ruleset` sees why a
// port is open. Both come from this package, never from the config.
func (l Listener) comment(g Group) string { return g.Name + ": " + l.Key }

// The listener groups, in the order of the chain.
const (
	GroupCallRouter = "umedge call-router"
	GroupMedia      = "umedge media"
	GroupAdmin      = "umedge admin"
)

// FromConfig builds the ruleset for cfg, which must have passed
// config.Validate.
func FromConfig(cfg *config.Config) (Ruleset, error) {
	var rs Ruleset
	router, err := callRouter(cfg.SIP)
	if err != nil {
		return Ruleset{}, err
	}
	rs.add(GroupCallRouter, router)
	rs.add(GroupMedia, media(cfg.Media))
	admin, err := admin(cfg.Admin)
	if err != nil {
		return Ruleset{}, err
	}
	rs.add(GroupAdmin, admin)
	return rs, nil
}

func (rs *Ruleset) add(name string, ls []Listener) {
	if len(ls) > 0 {
		rs.Groups = append(rs.Groups, Group{Name: name, Rules: ls})
	}
}

// Len is the number of rules in the chain, base rules included.
func (rs Ruleset) Len() int {
	n := len(baseRules)
	for _, g := range rs.Groups {
		n += len(g.Rules)
	}
	return n
}

// Find returns the listener rules that accept proto traffic to port on
// addr, for tests and diagnostics.
func (rs Ruleset) Find(proto Proto, addr netip.Addr, port uint16) []Listener {
	var out []Listener
	for _, g := range rs.Groups {
		for _, l := range g.Rules {
			if l.Proto == proto && port >= l.PortMin && port <= l.PortMax && l.matches(addr) {
				out = append(out, l)
			}
		}
	}
	return out
}

func (l Listener) matches(a netip.Addr) bool {
	a = a.Unmap()
	if d, ok := l.daddr(); ok {
		return d == a
	}
	switch l.family() {
	case 4:
		return a.Is4()
	case 6:
		return a.Is6()
	}
	return true
}

// family reports which address family the rule is limited to: 4, 6 or 0
// for both. Go listens dual-stack on "::", so the IPv6 wildcard is both.
func (l Listener) family() int {
	switch {
	case !l.Addr.IsValid():
		return 0
	case l.Addr.IsUnspecified() && l.Addr.Is6():
		return 0
	case l.Addr.Is4():
		return 4
	}
	return 6
}

// daddr is the destination address the rule compares, if any.
func (l Listener) daddr() (netip.Addr, bool) {
	if !l.Addr.IsValid() || l.Addr.IsUnspecified() {
		return netip.Addr{}, false
	}
	return l.Addr, true
}

// listenAddr parses a validated listen address. The zone of a link-local
// address names an interface, which a destination address match cannot
// carry; it is dropped, so the rule matches the address on any interface.
func listenAddr(key, text string) (netip.Addr, error) {
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s: %q is not an IP address", ErrListen, key, text)
	}
	return a.Unmap().WithZone(""), nil
}

func callRouter(s config.SIP) ([]Listener, error) {
	var out []Listener
	for i, text := range s.Listen {
		key := "sip.listen[" + strconv.Itoa(i) + "]"
		a, err := listenAddr(key, text)
		if err != nil {
			return nil, err
		}
		if s.Mode.UsesTCP() {
			p := uint16(s.TCPPort)
			out = append(out, Listener{Proto: TCP, Addr: a, PortMin: p, PortMax: p, Key: "sip.tcp_port"})
			if s.UDP {
				out = append(out, Listener{Proto: UDP, Addr: a, PortMin: p, PortMax: p, Key: "sip.tcp_port"})
			}
		}
		if s.Mode.UsesTLS() {
			p := uint16(s.TLSPort)
			out = append(out, Listener{Proto: TCP, Addr: a, PortMin: p, PortMax: p, Key: "sip.tls_port"})
		}
	}
	return out, nil
}

// media opens the RTP/RTCP range on every address: the media engine binds
// where the SDP says, not to sip.listen.
func media(m config.Media) []Listener {
	return []Listener{{Proto: UDP, PortMin: uint16(m.PortMin), PortMax: uint16(m.PortMax), Key: "media.port_min..port_max"}}
}

// admin opens admin.listen. A host name there may resolve to any of the
// box's addresses, so it opens the port on every address, as the empty
// host does.
func admin(a config.Admin) ([]Listener, error) {
	if a.Listen == "" {
		return nil, nil
	}
	host, portText, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.listen: %q is not host:port: %w", ErrListen, a.Listen, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("%w: admin.listen: port %q is not in 1..65535", ErrListen, portText)
	}
	p := uint16(port)
	rule := func(addr netip.Addr) Listener {
		return Listener{Proto: TCP, Addr: addr, PortMin: p, PortMax: p, Key: "admin.listen"}
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return []Listener{rule(addr.Unmap().WithZone(""))}, nil
	}
	if strings.EqualFold(host, "localhost") { // as the config and the admin server take it: loopback only

		return []Listener{rule(netip.MustParseAddr("127.0.0.1")), rule(netip.IPv6Loopback())}, nil
	}
	return []Listener{rule(netip.Addr{})}, nil
}
