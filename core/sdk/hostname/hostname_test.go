package hostname

import (
	"strings"
	"testing"
)

func TestValidDNSName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tt := range []struct {
		give string
		want bool
	}{
		{"umedge.local", true},
		{"umedge.local.", true},
		{"a", true},
		{"x-1.example.org", true},
		{long + ".example", true},
		{strings.Repeat(long+".", 3) + strings.Repeat("a", 61), true}, // 253
		{"", false},
		{".", false},
		{"a..b", false},
		{".a", false},
		{"-a.example", false},
		{"a-.example", false},
		{long + "a.example", false}, // a 64-byte label
		{strings.Repeat(long+".", 3) + strings.Repeat("a", 62), false}, // 254
		{"*.example", false},
		{"a_b.example", false},
		{"a b", false},
		{"host;transport=tcp", false},
		{"ümlaut.example", false},
	} {
		if got := ValidDNSName(tt.give); got != tt.want {
			t.Errorf("ValidDNSName(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, tt := range []struct {
		give string
		want bool
	}{
		{"192.0.2.1", true},
		{"2001:db8::1", true},
		{"gw.example", true},
		{"fe80::1%eth0", false}, // a zone has no place in a URI the core writes
		{"[2001:db8::1]", false},
		{"192.0.2.1:5060", false},
		{"", false},
	} {
		if got := ValidHost(tt.give); got != tt.want {
			t.Errorf("ValidHost(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}
