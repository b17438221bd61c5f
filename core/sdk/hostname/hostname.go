// Package hostname tells host names and addresses from garbage, the same
// way for the config, the SDK and the plugins. It imports only the
// standard library, so core/config (and through it the appliance's init)
// does not link the SDK's gRPC machinery; core/sdk/router re-exports it.
package hostname

import (
	"net/netip"
	"strings"
)

// ValidHost reports whether s can stand as the host of a SIP URI the core
// writes: an IP address without zone, or a DNS name. Anything else could
// carry URI syntax into the 302's Contact.
func ValidHost(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	return ValidDNSName(s)
}

// ValidDNSName reports whether s is a DNS host name: RFC 1123 labels, an
// optional trailing dot, no wildcard.
func ValidDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
