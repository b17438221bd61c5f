package sipfront

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestBanList(t *testing.T) {
	b := newBanList()
	b.set(3, time.Minute)
	now := time.Unix(1000, 0)
	scanner := netip.MustParseAddr("198.51.100.7")
	for i := range 3 {
		if b.refused(scanner, now) {
			t.Fatalf("banned after %d refusals, threshold 3", i+1)
		}
	}
	if !b.refused(scanner, now) || !b.banned(scanner, now) {
		t.Fatal("not banned after 4 refusals within the window")
	}
	if !b.banned(scanner, now.Add(59*time.Second)) || b.banned(scanner, now.Add(61*time.Second)) {
		t.Error("the ban does not last exactly ban_time")
	}
	// Refusals spread wider than the window never ban.
	slow := netip.MustParseAddr("198.51.100.8")
	for i := range 20 {
		if b.refused(slow, now.Add(time.Duration(i)*4*time.Second)) {
			t.Fatalf("a source refused once every 4 s was banned at refusal %d", i+1)
		}
	}
	// An IPv6 source counts by its /64: hopping addresses inside it does
	// not escape the ban.
	for i := range 4 {
		b.refused(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)), now)
	}
	if !b.banned(netip.MustParseAddr("2001:db8:1:2::ffff"), now) {
		t.Error("a /64 hopping addresses was not banned")
	}
	if b.banned(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Error("the neighbouring /64 was banned too")
	}
}

// A flood of distinct sources fills the fixed table without growing it,
// and sources already banned stay banned.
func TestBanListBounded(t *testing.T) {
	b := newBanList()
	b.set(1, time.Minute)
	now := time.Unix(1000, 0)
	first := netip.MustParseAddr("192.0.2.1")
	b.refused(first, now)
	b.refused(first, now)
	if !b.banned(first, now) {
		t.Fatal("not banned")
	}
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.refused(a, now)
		b.refused(a, now)
	}
	if !b.banned(first, now) {
		t.Error("a flood of new sources pushed a banned one out")
	}
}

func TestBanListOff(t *testing.T) {
	b := newBanList()
	now := time.Now()
	src := netip.MustParseAddr("192.0.2.9")
	for range 1000 {
		if b.refused(src, now) {
			t.Fatal("banned with the ban list off")
		}
	}
}
