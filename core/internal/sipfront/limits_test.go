package sipfront

import (
	"net/netip"
	"testing"
	"time"
)

func TestConnLimit(t *testing.T) {
	tests := []struct {
		name        string
		nofile      uint64
		configured  int
		want        int
		wantClamped bool
	}{
		{name: "common soft limit keeps 256", nofile: 1024, want: 768},
		{name: "large limit keeps 10 percent", nofile: 1 << 20, want: 1<<20 - (1<<20)/10},
		{name: "this box's limit", nofile: 20000, want: 18000},
		{name: "tiny limit keeps half", nofile: 300, want: 150},
		{name: "unlimited is capped", nofile: ^uint64(0), want: maxDerivedConns},
		{name: "configured below the limit", nofile: 20000, configured: 500, want: 500},
		{name: "configured at the limit", nofile: 20000, configured: 18000, want: 18000},
		{name: "configured above the limit is clamped", nofile: 1024, configured: 10000, want: 768, wantClamped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, clamped := connLimit(tt.nofile, tt.configured)
			if got != tt.want || clamped != tt.wantClamped {
				t.Fatalf("connLimit(%d, %d) = %d, %v; want %d, %v", tt.nofile, tt.configured, got, clamped, tt.want, tt.wantClamped)
			}
			// The headroom: whatever the configuration, the admin API,
			// plugins, UDP sockets and probes keep max(256, 10 %), or half
			// of a limit too small for that.
			if tt.nofile < 1<<40 {
				reserve := min(max(256, tt.nofile/10), tt.nofile/2)
				if uint64(got) > tt.nofile-reserve {
					t.Errorf("limit %d leaves %d of %d descriptors, want at least %d", got, tt.nofile-uint64(got), tt.nofile, reserve)
				}
			}
		})
	}
}

func TestConnTable(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2") // one /64
	v6other := netip.MustParseAddr("2001:db8:0:1::1")
	tests := []struct {
		name      string
		perSource int
		total     int
		acquire   []netip.Addr
		want      []string // refusal per acquire, "" = accepted
	}{
		{name: "per source", perSource: 2, total: 10, acquire: []netip.Addr{a, a, a, b},
			want: []string{"", "", refusedPerSource, ""}},
		{name: "global before per source", perSource: 2, total: 2, acquire: []netip.Addr{a, b, b},
			want: []string{"", "", refusedGlobal}},
		{name: "v4-mapped counts as v4", perSource: 1, total: 10, acquire: []netip.Addr{a, netip.AddrFrom16(a.As16())},
			want: []string{"", refusedPerSource}},
		{name: "ipv6 counts by /64", perSource: 1, total: 10, acquire: []netip.Addr{v6a, v6b, v6other},
			want: []string{"", refusedPerSource, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newConnTable()
			ct.setLimits(tt.perSource, tt.total)
			var held []netip.Addr
			for i, src := range tt.acquire {
				got, _ := ct.acquire(src, true)
				if got != tt.want[i] {
					t.Fatalf("acquire #%d (%s) = %q, want %q", i, src, got, tt.want[i])
				}
				if got == "" {
					held = append(held, src)
				}
			}
			if ct.open() != len(held) {
				t.Errorf("open = %d, want %d", ct.open(), len(held))
			}
			for _, src := range held {
				ct.release(src, true)
			}
			if ct.open() != 0 || len(ct.perSource) != 0 {
				t.Errorf("after release: open %d, %d sources, want none", ct.open(), len(ct.perSource))
			}
			if got, _ := ct.acquire(tt.acquire[len(tt.acquire)-1], true); got != "" {
				t.Errorf("acquire after release = %q, want accepted", got)
			}
		})
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{interval: time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at       time.Duration
		wantOK   bool
		wantHeld int
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
	}
	for _, st := range steps {
		ok, held := l.allow(t0.Add(st.at))
		if ok != st.wantOK || held != st.wantHeld {
			t.Errorf("allow at +%v = %v, %d; want %v, %d", st.at, ok, held, st.wantOK, st.wantHeld)
		}
	}
}

// Sources that are no configured peer hold at most half the connections:
// a flood from many addresses leaves room for the gateways.
func TestConnTableKeepsRoomForPeers(t *testing.T) {
	ct := newConnTable()
	ct.setLimits(64, 10)
	for i := range 5 {
		if why, _ := ct.acquire(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), false); why != "" {
			t.Fatalf("stranger %d refused (%s) within half the limit", i, why)
		}
	}
	if why, _ := ct.acquire(netip.MustParseAddr("198.51.100.99"), false); why != refusedGlobal {
		t.Fatalf("sixth stranger: %q, want refused (global)", why)
	}
	gw := netip.MustParseAddr("192.0.2.10")
	for i := range 5 {
		if why, _ := ct.acquire(gw, true); why != "" {
			t.Fatalf("gateway connection %d refused (%s) while strangers hold their half", i, why)
		}
	}
	if why, _ := ct.acquire(gw, true); why != refusedGlobal {
		t.Fatalf("past the total: %q, want refused (global)", why)
	}
	ct.release(netip.AddrFrom4([4]byte{198, 51, 100, 0}), false)
	if why, _ := ct.acquire(netip.MustParseAddr("198.51.100.99"), false); why != "" {
		t.Fatalf("stranger after one left: %q, want accepted", why)
	}
}
