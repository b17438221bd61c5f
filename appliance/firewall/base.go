package firewall

// baseRule is one of the rules every ruleset starts with.
type baseRule struct {
	kind     baseKind
	icmpType uint8  // for icmp4, icmp6
	name     string // nft's name of icmpType
}

type baseKind uint8

const (
	ctEstablished baseKind = iota // ct state established,related accept
	ctInvalid                     // ct state invalid drop
	loopback                      // iifname "lo" accept
	icmp4                         // icmp type NAME accept
	icmp6                         // icmpv6 type NAME accept
)

// baseRules: replies and related traffic, loopback, then the ICMP a host
// needs: errors (path MTU discovery needs "packet too big" and
// "destination unreachable"), echo for diagnostics, and for IPv6 router
// and neighbour discovery (RFC 4861) and MLD queries, without which a
// snooping switch stops forwarding the solicited-node multicast that
// neighbour discovery runs on (RFC 4890 §4.4.1).
var baseRules = []baseRule{
	{kind: ctEstablished},
	{kind: ctInvalid},
	{kind: loopback},
	{kind: icmp4, icmpType: 0, name: "echo-reply"},
	{kind: icmp4, icmpType: 3, name: "destination-unreachable"},
	{kind: icmp4, icmpType: 8, name: "echo-request"},
	{kind: icmp4, icmpType: 11, name: "time-exceeded"},
	{kind: icmp4, icmpType: 12, name: "parameter-problem"},
	{kind: icmp6, icmpType: 1, name: "destination-unreachable"},
	{kind: icmp6, icmpType: 2, name: "packet-too-big"},
	{kind: icmp6, icmpType: 3, name: "time-exceeded"},
	{kind: icmp6, icmpType: 4, name: "parameter-problem"},
	{kind: icmp6, icmpType: 128, name: "echo-request"},
	{kind: icmp6, icmpType: 129, name: "echo-reply"},
	{kind: icmp6, icmpType: 130, name: "mld-listener-query"},
	{kind: icmp6, icmpType: 134, name: "nd-router-advert"},
	{kind: icmp6, icmpType: 135, name: "nd-neighbor-solicit"},
	{kind: icmp6, icmpType: 136, name: "nd-neighbor-advert"},
}
