package firewall

import (
	"fmt"
	"strings"
)

// String prints the ruleset in nft syntax, as `nft -f` loads it and as
// `edged firewall print` shows it. It prints the same rules Apply installs.
func (rs Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	fmt.Fprintf(&b, "\tchain %s {\n", Chain)
	b.WriteString("\t\ttype filter hook input priority filter; policy drop;\n")
	for _, r := range baseRules {
		b.WriteString("\t\t" + r.nft() + "\n")
	}
	for _, g := range rs.Groups {
		for _, l := range g.Rules {
			fmt.Fprintf(&b, "\t\t%s accept comment %q\n", l.nft(), l.comment(g))
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func (r baseRule) nft() string {
	switch r.kind {
	case ctEstablished:
		return "ct state established,related accept"
	case ctInvalid:
		return "ct state invalid drop"
	case loopback:
		return `iifname "lo" accept`
	case icmp4:
		return "icmp type " + r.name + " accept"
	default:
		return "icmpv6 type " + r.name + " accept"
	}
}

// nft is the match part of the listener's rule. Only typed values are
// printed: an address from netip (without a zone), numbers, and the
// protocol's name.
func (l Listener) nft() string {
	var b strings.Builder
	if a, ok := l.daddr(); ok {
		if a.Is4() {
			fmt.Fprintf(&b, "ip daddr %s ", a)
		} else {
			fmt.Fprintf(&b, "ip6 daddr %s ", a)
		}
	} else if l.family() == 4 {
		b.WriteString("meta nfproto ipv4 ")
	}
	fmt.Fprintf(&b, "%s dport %d", l.Proto, l.PortMin)
	if l.PortMax != l.PortMin {
		fmt.Fprintf(&b, "-%d", l.PortMax)
	}
	return b.String()
}
