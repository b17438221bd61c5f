package netcfg

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/appliance/internal/apptest"
	"github.com/umedge/umedge/appliance/internal/nstest"
	"github.com/umedge/umedge/core/config"
)

func network(t *testing.T, text string) config.Network {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte("[sip]\nmode = \"tcp\"\n"+text))
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg.Network
}

// dhcpServer answers DISCOVER and REQUEST on link peer0 of ns with a lease
// of 192.0.2.100/24 for leaseSecs, router 192.0.2.1 and resolver
// 192.0.2.53, changed by extra. It counts its ACKs in acks.
func dhcpServer(t *testing.T, ns *nstest.NS, leaseSecs uint32, acks *atomic.Int32, extra ...dhcpv4.Modifier) {
	t.Helper()
	handler := func(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
			acks.Add(1)
		default:
			return
		}
		mods := []dhcpv4.Modifier{
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.ParseIP("192.0.2.100")),
			dhcpv4.WithServerIP(net.ParseIP("192.0.2.1")),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1"))),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(net.ParseIP("192.0.2.1")),
			dhcpv4.WithDNS(net.ParseIP("192.0.2.53")),
			dhcpv4.WithLeaseTime(leaseSecs),
		}
		reply, err := dhcpv4.NewReplyFromRequest(m, append(mods, extra...)...)
		if err != nil {
			t.Errorf("DHCP reply: %v", err)
			return
		}
		// The client has no address yet: broadcast.
		if _, err := conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
			t.Errorf("DHCP send: %v", err)
		}
	}
	ns.Do(t, func() {
		s, err := server4.NewServer("peer0", &net.UDPAddr{Port: dhcpv4.ServerPort}, handler)
		if err != nil {
			t.Fatalf("DHCP server: %v", err)
		}
		go func() { _ = s.Serve() }()
		t.Cleanup(func() { s.Close() })
	})
}

func linkOf(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return link
}

func addrsOf(t *testing.T, h *netlink.Handle, name string) []string {
	t.Helper()
	list, err := h.AddrList(linkOf(t, h, name), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

func routesOf(t *testing.T, h *netlink.Handle, name string) []string {
	t.Helper()
	list, err := h.RouteList(linkOf(t, h, name), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range list {
		dst := "default"
		if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZero(r.Dst.Mask)) {
			dst = r.Dst.String()
		}
		if r.Gw != nil {
			out = append(out, dst+" via "+r.Gw.String())
		}
	}
	return out
}

func isZero(m net.IPMask) bool { ones, _ := m.Size(); return ones == 0 }

// TestApplyInNamespace configures a namespace's eth0 with static addresses,
// routes, an MTU, a VLAN and a DHCP lease from a server in a second
// namespace, then reloads a changed config and checks that what was
// dropped is gone.
func TestApplyInNamespace(t *testing.T) {
	box, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, box, "eth0", nil, peer, "peer0", []string{"192.0.2.1/24"})
	dhcpServer(t, peer, 600, new(atomic.Int32))
	h := box.Netlink(t)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	c := New(h, slog.New(slog.DiscardHandler), resolv)
	t.Cleanup(c.Close)
	ctx := t.Context()

	first := network(t, `[network]
dns = ["198.51.100.53"]
[network.interfaces.eth0]
dhcp = true
mtu = 1400
addresses = ["198.51.100.10/24", "2001:db8::10/64"]
routes = [{ to = "203.0.113.0/24", via = "198.51.100.1" }, { to = "::/0", via = "2001:db8::1" }]
`)
	var err error
	box.Do(t, func() { err = c.Apply(ctx, first) })
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.WaitDHCP(wctx); err != nil {
		t.Fatal(err)
	}

	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != 1400 || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 MTU %d flags %v, want 1400 and up", eth0.Attrs().MTU, eth0.Attrs().Flags)
	}
	wantSet(t, "eth0 addresses", addrsOf(t, h, "eth0"), "198.51.100.10/24", "2001:db8::10/64", "192.0.2.100/24")
	wantSet(t, "eth0 routes", routesOf(t, h, "eth0"), "203.0.113.0/24 via 198.51.100.1", "default via 2001:db8::1", "default via 192.0.2.1")
	data, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); !strings.Contains(got, "nameserver 198.51.100.53\nnameserver 192.0.2.53\n") {
		t.Errorf("resolv.conf = %q, want network.dns first, then the lease's", got)
	}
	// The leased address works: the DHCP server's namespace answers on it.
	box.Do(t, func() {
		conn, err := net.DialTimeout("udp", "192.0.2.1:9", time.Second)
		if err != nil {
			t.Errorf("dial over the leased address: %v", err)
			return
		}
		if src := netip.MustParseAddrPort(conn.LocalAddr().String()).Addr(); src != netip.MustParseAddr("192.0.2.100") {
			t.Errorf("source address %s, want the leased 192.0.2.100", src)
		}
		conn.Close()
	})

	// Reload: another static address, one route less, no DHCP.
	second := network(t, `[network.interfaces.eth0]
addresses = ["198.51.100.11/24"]
routes = [{ to = "::/0", via = "fe80::1" }]
`)
	box.Do(t, func() { err = c.Apply(ctx, second) })
	if err != nil {
		t.Fatalf("Apply (reload): %v", err)
	}
	got := addrsOf(t, h, "eth0")
	wantSet(t, "eth0 addresses after reload", got, "198.51.100.11/24")
	for _, gone := range []string{"198.51.100.10/24", "2001:db8::10/64"} {
		if slices.Contains(got, gone) {
			t.Errorf("%s still on eth0 after the reload dropped it", gone)
		}
	}
	routes := routesOf(t, h, "eth0")
	if slices.Contains(routes, "203.0.113.0/24 via 198.51.100.1") {
		t.Errorf("dropped route still there: %v", routes)
	}
	wantSet(t, "eth0 routes after reload", routes, "default via fe80::1")
}

// TestVLANInNamespace creates a VLAN with its address on eth0, and a
// reload without it deletes it.
func TestVLANInNamespace(t *testing.T) {
	box, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, box, "eth0", nil, peer, "peer0", nil)
	h := box.Netlink(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !has8021Q(t, h, eth0) {
		t.Skip("this host's kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q); TestVLANWithout8021Q runs instead, and images/boottest's TestIntegrationVLAN boots a kernel with it")
	}

	c := New(h, slog.New(slog.DiscardHandler), "")
	t.Cleanup(c.Close)
	with := network(t, `[network.interfaces.eth0]
[network.interfaces.voice]
parent = "eth0"
vlan = 100
addresses = ["10.100.0.10/24"]
`)
	box.Do(t, func() { err = c.Apply(t.Context(), with) })
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	voice, err := h.LinkByName("voice")
	if err != nil {
		t.Fatalf("VLAN link: %v", err)
	}
	if v, ok := voice.(*netlink.Vlan); !ok || v.VlanId != 100 || v.ParentIndex != eth0.Attrs().Index {
		t.Errorf("voice = %#v, want VLAN 100 on eth0", voice)
	}
	wantSet(t, "voice addresses", addrsOf(t, h, "voice"), "10.100.0.10/24")
	box.Do(t, func() {
		if rp, err := os.ReadFile("/proc/sys/net/ipv4/conf/eth0/rp_filter"); err != nil || string(rp) != "1\n" {
			t.Errorf("eth0 rp_filter = %q, %v; want 1 (strict) on a VLAN's parent", rp, err)
		}
	})

	box.Do(t, func() { err = c.Apply(t.Context(), network(t, "[network.interfaces.eth0]\n")) })
	if err != nil {
		t.Fatalf("Apply (reload): %v", err)
	}
	if _, err := h.LinkByName("voice"); err == nil {
		t.Error("VLAN voice still exists after the reload dropped it")
	}
}

// has8021Q tells whether the kernel makes VLAN links, by making one.
func has8021Q(t *testing.T, h *netlink.Handle, parent netlink.Link) bool {
	t.Helper()
	probe := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "probe", ParentIndex: parent.Attrs().Index}, VlanId: 9}
	if err := h.LinkAdd(probe); errors.Is(err, unix.EOPNOTSUPP) {
		return false
	} else if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(probe); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestVLANWithout8021Q: on a kernel without 802.1Q the VLAN's key and the
// missing kernel feature are named, and the other interfaces (the parent
// with its address, a VLAN-less second link) are still configured.
func TestVLANWithout8021Q(t *testing.T) {
	box, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, box, "eth0", nil, peer, "peer0", nil)
	nstest.Veth(t, box, "eth1", nil, peer, "peer1", nil)
	h := box.Netlink(t)
	if has8021Q(t, h, linkOf(t, h, "eth0")) {
		t.Skip("this host's kernel has 802.1Q; TestVLANInNamespace runs instead")
	}
	c := New(h, slog.New(slog.DiscardHandler), "")
	t.Cleanup(c.Close)
	n := network(t, `[network.interfaces.eth0]
addresses = ["198.51.100.10/24"]
[network.interfaces.eth1]
addresses = ["203.0.113.10/24"]
[network.interfaces.voice]
parent = "eth0"
vlan = 100
addresses = ["10.100.0.10/24"]
`)
	var err error
	box.Do(t, func() { err = c.Apply(t.Context(), n) })
	if !errors.Is(err, ErrNo8021Q) {
		t.Fatalf("Apply = %v, want ErrNo8021Q", err)
	}
	const want = "network.interfaces.voice: create VLAN 100 on eth0: this kernel lacks 802.1Q VLAN support"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Apply = %q, want it to contain %q", err, want)
	}
	wantSet(t, "eth0 addresses", addrsOf(t, h, "eth0"), "198.51.100.10/24")
	wantSet(t, "eth1 addresses", addrsOf(t, h, "eth1"), "203.0.113.10/24")
	if _, err := h.LinkByName("voice"); err == nil {
		t.Error("a link voice exists although the kernel cannot make VLANs")
	}
}

// TestApplyReportsEveryProblem: a missing link is named by its key, and
// the other interfaces are still configured.
func TestApplyReportsEveryProblem(t *testing.T) {
	box, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, box, "eth0", nil, peer, "peer0", nil)
	h := box.Netlink(t)
	c := New(h, slog.New(slog.DiscardHandler), "")
	t.Cleanup(c.Close)
	n := network(t, `[network.interfaces.eth0]
addresses = ["198.51.100.10/24"]
[network.interfaces.eth9]
addresses = ["198.51.100.20/24"]
[network.interfaces.eth8]
[network.interfaces.tagged]
parent = "eth8"
vlan = 7
`)
	var err error
	box.Do(t, func() { err = c.Apply(t.Context(), n) })
	for _, want := range []string{"network.interfaces.eth9: link eth9", "network.interfaces.eth8: link eth8", "network.interfaces.tagged: parent eth8"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply = %v, want a problem %q", err, want)
		}
	}
	wantSet(t, "eth0 addresses", addrsOf(t, h, "eth0"), "198.51.100.10/24")
}

func wantSet(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s = %v, want %s among them", what, got, w)
		}
	}
}

// dhcpBox is a box whose eth0 takes DHCP from dhcpServer(lease, extra)
// in a peer namespace; it returns the box's netlink handle.
func dhcpBox(t *testing.T, lease uint32, acks *atomic.Int32, extra ...dhcpv4.Modifier) *netlink.Handle {
	t.Helper()
	box, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, box, "eth0", nil, peer, "peer0", []string{"192.0.2.1/24"})
	dhcpServer(t, peer, lease, acks, extra...)
	h := box.Netlink(t)
	c := New(h, slog.New(slog.DiscardHandler), "")
	t.Cleanup(c.Close)
	var err error
	box.Do(t, func() { err = c.Apply(t.Context(), network(t, "[network.interfaces.eth0]\ndhcp = true\n")) })
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDHCPRenews: a short lease is renewed at half its time, and the
// address stays with the lifetime the server gives.
func TestDHCPRenews(t *testing.T) {
	var acks atomic.Int32
	h := dhcpBox(t, 2, &acks)
	apptest.WaitFor(t, func() bool { return acks.Load() >= 3 }, "two renewals of a 2 s lease")
	list, err := h.AddrList(linkOf(t, h, "eth0"), netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if a.IPNet.String() == "192.0.2.100/24" {
			if a.ValidLft <= 0 || a.ValidLft > 2 {
				t.Errorf("leased address valid for %d s, want the lease's 2 s at most", a.ValidLft)
			}
			return
		}
	}
	t.Errorf("leased address gone after renewals: %v", list)
}

// TestDHCPHostileLease: what a rogue or broken DHCP server on the LAN
// sends must not make the box spin or claim more than one subnet. A lease
// of 0 s with a renewal time of 0 was renewed in a tight loop (and the
// address installed for ever: a lifetime of 0 is none for netlink); a
// non-contiguous netmask made the address a /0, every IPv4 destination
// on-link.
func TestDHCPHostileLease(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lease uint32
		extra []dhcpv4.Modifier
	}{
		{name: "lease and renewal 0 s", lease: 0, extra: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(0))}},
		{name: "renewal 0 s", lease: 3600, extra: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(0))}},
		{name: "mask 255.0.255.0", lease: 3600, extra: []dhcpv4.Modifier{dhcpv4.WithNetmask(net.IPv4Mask(255, 0, 255, 0))}},
		{name: "mask 0.0.0.0", lease: 3600, extra: []dhcpv4.Modifier{dhcpv4.WithNetmask(net.IPv4Mask(0, 0, 0, 0))}},
		{name: "router 0.0.0.0", lease: 3600, extra: []dhcpv4.Modifier{dhcpv4.WithRouter(net.IPv4zero)}},
		{name: "router broadcast", lease: 3600, extra: []dhcpv4.Modifier{dhcpv4.WithRouter(net.IPv4bcast)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var acks atomic.Int32
			h := dhcpBox(t, tt.lease, &acks, tt.extra...)
			time.Sleep(2 * time.Second)
			if n := acks.Load(); n > 4 {
				t.Errorf("%d ACKs in 2 s: the client renews in a loop", n)
			}
			list, err := h.AddrList(linkOf(t, h, "eth0"), netlink.FAMILY_V4)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range list {
				ones, _ := a.IPNet.Mask.Size()
				if ones == 0 {
					t.Errorf("address %s installed: every IPv4 destination on-link", a.IPNet)
				}
				if a.ValidLft == 0 || a.ValidLft > 3600 {
					t.Errorf("address %s valid for %d s (0 = for ever), want at most the lease's", a.IPNet, a.ValidLft)
				}
			}
			routes, err := h.RouteList(linkOf(t, h, "eth0"), netlink.FAMILY_V4)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range routes {
				if (r.Dst == nil || isZero(r.Dst.Mask)) && (r.Gw == nil || r.Gw.IsUnspecified() || r.Gw.Equal(net.IPv4bcast)) {
					t.Errorf("default route %s: every destination on-link or to the broadcast address", r)
				}
			}
		})
	}
}
