package media

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// bareXDPPath is an XDP path with no engine around it, for the
// resolver's event handling alone.
func bareXDPPath(t *testing.T, ns vnetns.NsHandle) *xdpPath {
	p := &xdpPath{ns: ns, log: t.Logf, info: t.Logf,
		reqs: make(chan hopReq, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		neighs: map[neighDumpKey]neighDump{}, txq: map[int]int{}, macs: map[neighKey][6]byte{}, xsks: map[[2]int]*xskSlot{}, queues: map[int]int{},
		links: map[int]linkState{}}
	p.neighEv, p.routeEv, p.linkEv = make(chan netlink.NeighUpdate), make(chan netlink.RouteUpdate), make(chan netlink.LinkUpdate)
	p.subDone = make(chan struct{})
	return p
}

// TestSendPathEventsResubscribeNoLeak (from the review): the
// subscriptions lost, then every resubscription failing (the namespace
// handle is not a namespace, as any SubscribeAt error would do), and the
// path stopped: no goroutine is left behind (a channel whose subscription
// failed has no reader to close it; the path closes it).
func TestSendPathEventsResubscribeNoLeak(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := bareXDPPath(t, vnetns.NsHandle(f.Fd()))
	ne, re, le := p.neighEv, p.routeEv, p.linkEv
	before := runtime.NumGoroutine()
	go p.resolver()
	close(ne) // an overflow on one; the library closes the others once done closes
	time.Sleep(50 * time.Millisecond)
	close(re)
	close(le)
	time.Sleep(3*resubscribeAfter + 500*time.Millisecond) // three failed resubscriptions
	close(p.stop)
	<-p.stopped
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left after failed resubscriptions and the stop", n-before)
	}
}

// TestSendPathEventsLinkMessages (from the review): a port leaving a
// bridge gets an RTM_DELLINK of family AF_BRIDGE for a link that lives on:
// its XSKs stay. Link messages that change nothing a hop depends on (a
// wireless event, statistics, the same state again) leave the hops alone;
// an MTU change does not, nor does a real deletion, which closes the
// link's XSKs.
func TestSendPathEventsLinkMessages(t *testing.T) {
	p := bareXDPPath(t, 0)
	q := &xsk{}
	p.xsks[[2]int{7, 0}] = &xskSlot{q: q}
	go p.resolver()
	defer func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
	}()
	var u netlink.LinkUpdate
	u.Index, u.Family = 7, unix.AF_BRIDGE
	u.Header.Type = unix.RTM_DELLINK
	p.linkEv <- u
	link := func(mtu int) netlink.LinkUpdate {
		var u netlink.LinkUpdate
		u.Index, u.Family, u.Header.Type = 7, unix.AF_UNSPEC, unix.RTM_NEWLINK
		u.Link = &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: 7, MTU: mtu, RawFlags: unix.IFF_UP}}
		return u
	}
	for range 10 {
		p.linkEv <- link(1500)
	}
	p.linkEv <- link(1500) // handed over: the ten before are taken in
	g0 := p.gen.Load()
	p.mu.Lock()
	_, kept := p.xsks[[2]int{7, 0}]
	p.mu.Unlock()
	if q.broken || !kept {
		t.Errorf("an AF_BRIDGE RTM_DELLINK (a port left its bridge, the link alive) closed the link's XSK: kept %v, broken %v", kept, q.broken)
	}
	if g := p.gen.Load(); g != 0 {
		t.Errorf("11 link messages that change nothing bumped the generation %d times", g)
	}
	p.linkEv <- link(1400)
	p.linkEv <- link(1400)
	if g := p.gen.Load(); g != g0+1 {
		t.Errorf("an MTU change bumped the generation %d times, want 1", g-g0)
	}
	u.Family = unix.AF_UNSPEC
	p.linkEv <- u // deleted
	p.linkEv <- link(1400)
	p.mu.Lock()
	_, kept = p.xsks[[2]int{7, 0}]
	p.mu.Unlock()
	if kept {
		t.Error("the XSK of a deleted link was kept")
	}
}

// TestSendPathEventsRoutes: a route change that may move a hop bumps the
// generation, IPv6 as IPv4 (the path takes both); the churn that comes
// with every link's up and DAD (IPv6 link-local and multicast routes, the
// local table's) does not, nor would it send every hop to the socket for
// nothing.
func TestSendPathEventsRoutes(t *testing.T) {
	route := func(family int, table int, dst string) netlink.RouteUpdate {
		var u netlink.RouteUpdate
		u.Type = unix.RTM_NEWROUTE
		u.Family, u.Table, u.LinkIndex = family, table, 7
		if dst != "" {
			_, n, err := net.ParseCIDR(dst)
			if err != nil {
				t.Fatal(err)
			}
			u.Dst = n
		}
		return u
	}
	tests := []struct {
		name     string
		give     netlink.RouteUpdate
		wantBump bool
	}{
		{"ipv4 subnet", route(unix.AF_INET, unix.RT_TABLE_MAIN, "10.1.2.0/24"), true},
		{"ipv4 default", route(unix.AF_INET, unix.RT_TABLE_MAIN, ""), true},
		{"ipv4 local table", route(unix.AF_INET, unix.RT_TABLE_LOCAL, "10.1.2.1/32"), false},
		{"ipv6 subnet", route(unix.AF_INET6, unix.RT_TABLE_MAIN, "fd00:1::/64"), true},
		{"ipv6 host route", route(unix.AF_INET6, unix.RT_TABLE_MAIN, "2001:db8::2/128"), true},
		{"ipv6 default", route(unix.AF_INET6, unix.RT_TABLE_MAIN, ""), true},
		{"ipv6 another table", route(unix.AF_INET6, 100, "2001:db8::/32"), true},
		{"ipv6 link-local", route(unix.AF_INET6, unix.RT_TABLE_MAIN, "fe80::/64"), false},
		{"ipv6 multicast", route(unix.AF_INET6, unix.RT_TABLE_MAIN, "ff00::/8"), false},
		{"ipv6 multicast, local table", route(unix.AF_INET6, unix.RT_TABLE_LOCAL, "ff00::/8"), false},
		{"ipv6 local table", route(unix.AF_INET6, unix.RT_TABLE_LOCAL, "fd00:1::1/128"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := bareXDPPath(t, 0)
			go p.resolver()
			defer close(p.stop)
			p.routeEv <- tt.give
			p.routeEv <- route(unix.AF_INET, unix.RT_TABLE_LOCAL, "10.0.0.1/32") // handed over: the one before is taken in
			if bumped := p.gen.Load() != 0; bumped != tt.wantBump {
				t.Errorf("generation bumped %v, want %v", bumped, tt.wantBump)
			}
		})
	}
}
