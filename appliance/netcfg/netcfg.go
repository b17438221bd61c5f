// Package netcfg configures the appliance's network from the [network]
// section of the config: links up with their MTU, VLANs, static addresses
// and routes through netlink (github.com/vishvananda/netlink), DHCPv4
// leases (github.com/insomniacslk/dhcp nclient4), and the resolver file.
//
// Apply may be called again with a changed config (a reload): what an
// earlier Apply set and the new config no longer has is removed; DHCP
// leases and what the kernel or others set are left alone.
package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/config"
)

// ErrNo8021Q means the running kernel cannot make VLAN interfaces.
var ErrNo8021Q = errors.New("this kernel lacks 802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q)")

// errNotVLAN means a link of the VLAN's name exists and is something else.
var errNotVLAN = errors.New("exists and is not that VLAN")

// Configurator applies [network] sections to one network namespace.
type Configurator struct {
	h          *netlink.Handle
	log        *slog.Logger
	resolvConf string // file the resolvers are written to; "" = none

	mu     sync.Mutex
	addrs  map[string][]netip.Prefix // link → static addresses set by Apply
	routes map[string][]route        // link → static routes set by Apply
	vlans  []string                  // VLAN links created by Apply
	dhcp   map[string]*dhcpClient    // link → running DHCP client
	dns    []netip.Addr              // network.dns
	leased map[string][]netip.Addr   // link → DNS servers of its lease
}

type route struct {
	to  netip.Prefix
	via netip.Addr
}

// New returns a Configurator that works through h and writes resolvers to
// resolvConf ("" = do not write them).
func New(h *netlink.Handle, log *slog.Logger, resolvConf string) *Configurator {
	return &Configurator{
		h: h, log: log, resolvConf: resolvConf,
		addrs: map[string][]netip.Prefix{}, routes: map[string][]route{},
		dhcp: map[string]*dhcpClient{}, leased: map[string][]netip.Addr{},
	}
}

// Apply brings the links to what n says. It reports every problem, each
// naming its key, and goes on with the other interfaces after one fails.
// DHCP clients it starts run until ctx ends, Close is called, or a later
// Apply drops their interface.
func (c *Configurator) Apply(ctx context.Context, n config.Network) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	fail := func(key string, err error) { errs = append(errs, fmt.Errorf("%s: %w", key, err)) }

	if err := c.up("lo", 0); err != nil {
		fail("network", err)
	}
	names := make([]string, 0, len(n.Interfaces))
	for name := range n.Interfaces {
		names = append(names, name)
	}
	// Parents before their VLANs, then by name.
	sort.Slice(names, func(i, j int) bool {
		vi, vj := n.Interfaces[names[i]].Parent != "", n.Interfaces[names[j]].Parent != ""
		if vi != vj {
			return vj
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		ifc := n.Interfaces[name]
		key := "network.interfaces." + name
		if ifc.Parent != "" {
			if err := c.vlan(name, ifc.Parent, ifc.VLAN); err != nil {
				fail(key, err)
				continue
			}
		}
		if err := c.up(name, ifc.MTU); err != nil {
			fail(key, err)
			continue
		}
		if err := c.setAddrs(name, ifc.Addresses); err != nil {
			fail(key+".addresses", err)
		}
		if err := c.setRoutes(name, ifc.Routes); err != nil {
			fail(key+".routes", err)
		}
	}
	c.dropGone(n)
	for _, name := range names {
		if err := c.syncDHCP(ctx, name, n.Interfaces[name].DHCP); err != nil {
			fail("network.interfaces."+name+".dhcp", err)
		}
	}
	c.dns = nil
	for _, s := range n.DNS {
		if a, err := netip.ParseAddr(s); err == nil {
			c.dns = append(c.dns, a)
		}
	}
	if err := c.writeResolvConf(); err != nil {
		fail("network.dns", err)
	}
	return errors.Join(errs...)
}

// Close stops the DHCP clients. Addresses and routes stay.
func (c *Configurator) Close() {
	c.mu.Lock()
	clients := c.dhcp
	c.dhcp = map[string]*dhcpClient{}
	c.mu.Unlock()
	for _, d := range clients {
		d.stop()
	}
}

func (c *Configurator) up(name string, mtu int) error {
	link, err := c.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if mtu != 0 && link.Attrs().MTU != mtu {
		if err := c.h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if err := c.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// vlan makes sure link name is VLAN id on parent, creating it if missing.
// The parent gets strict reverse-path filtering: Linux takes a packet for
// any of its addresses on any link (the weak host model), so without it
// an untagged frame from a VLAN's subnet reaches the VLAN's address and
// its listeners, and the answer leaves tagged.
func (c *Configurator) vlan(name, parent string, id int) error {
	p, err := c.h.LinkByName(parent)
	if err != nil {
		return fmt.Errorf("parent %s: %w", parent, err)
	}
	if l, err := c.h.LinkByName(name); err == nil {
		v, ok := l.(*netlink.Vlan)
		if !ok || v.VlanId != id || v.ParentIndex != p.Attrs().Index {
			return fmt.Errorf("link %s %w (VLAN %d on %s)", name, errNotVLAN, id, parent)
		}
		return strictRP(parent)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: id}
	if err := c.h.LinkAdd(v); errors.Is(err, unix.EOPNOTSUPP) {
		// rtnetlink knows no link kind "vlan" (and could not load it).
		return fmt.Errorf("create VLAN %d on %s: %w: %w", id, parent, ErrNo8021Q, err)
	} else if err != nil {
		return fmt.Errorf("create VLAN %d on %s: %w", id, parent, err)
	}
	c.vlans = append(c.vlans, name)
	return strictRP(parent)
}

// strictRP turns on strict reverse-path filtering (rp_filter 1) on link:
// a packet whose source is routed through another link is dropped.
func strictRP(link string) error {
	// /proc/sys/net shows the network namespace of the thread that opens it.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+link+"/rp_filter", []byte("1\n"), 0o644); err != nil { //nolint:gosec // a sysctl, not a file of ours
		return fmt.Errorf("strict reverse-path filter on %s: %w", link, err)
	}
	return nil
}

func (c *Configurator) setAddrs(name string, texts []string) error {
	link, err := c.h.LinkByName(name)
	if err != nil {
		return err
	}
	var want []netip.Prefix
	var errs []error
	for _, s := range texts {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", s, err))
			continue
		}
		want = append(want, p)
	}
	// Removals first: deleting the first address of a subnet takes the
	// kernel's secondaries in it along, new ones included.
	for _, old := range c.addrs[name] {
		if !slices.Contains(want, old) {
			if err := c.h.AddrDel(link, &netlink.Addr{IPNet: ipNet(old)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove %s from %s: %w", old, name, err))
			}
		}
	}
	for _, p := range want {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // a static address is ours; don't hold it back for DAD
		}
		if err := c.h.AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", p, name, err))
		}
	}
	c.addrs[name] = want
	return errors.Join(errs...)
}

func (c *Configurator) setRoutes(name string, rs []config.Route) error {
	link, err := c.h.LinkByName(name)
	if err != nil {
		return err
	}
	var want []route
	var errs []error
	for _, r := range rs {
		to, err := netip.ParsePrefix(r.To)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", r.To, err))
			continue
		}
		var via netip.Addr
		if r.Via != "" {
			if via, err = netip.ParseAddr(r.Via); err != nil {
				errs = append(errs, fmt.Errorf("via %q: %w", r.Via, err))
				continue
			}
		}
		want = append(want, route{to: to, via: via})
	}
	for _, old := range c.routes[name] {
		if !slices.Contains(want, old) {
			if err := c.h.RouteDel(c.nlRoute(link, old)); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("remove route %s: %w", old, err))
			}
		}
	}
	for _, rt := range want {
		if err := c.h.RouteReplace(c.nlRoute(link, rt)); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", rt, err))
		}
	}
	c.routes[name] = want
	return errors.Join(errs...)
}

func (r route) String() string {
	if r.via.IsValid() {
		return r.to.String() + " via " + r.via.String()
	}
	return r.to.String() + " on-link"
}

func (c *Configurator) nlRoute(link netlink.Link, r route) *netlink.Route {
	nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.to.Masked())}
	if r.via.IsValid() {
		nr.Gw = r.via.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
}

// dropGone forgets interfaces the config no longer names: their static
// addresses and routes are removed and the VLANs Apply made are deleted.
func (c *Configurator) dropGone(n config.Network) {
	for name := range c.addrs {
		if _, ok := n.Interfaces[name]; ok {
			continue
		}
		_ = c.setRoutes(name, nil) // best effort: the link may be gone
		_ = c.setAddrs(name, nil)
		delete(c.addrs, name)
		delete(c.routes, name)
	}
	keep := c.vlans[:0]
	for _, name := range c.vlans {
		if _, ok := n.Interfaces[name]; ok {
			keep = append(keep, name)
			continue
		}
		if l, err := c.h.LinkByName(name); err == nil {
			if err := c.h.LinkDel(l); err != nil {
				c.log.Warn("remove VLAN link", "link", name, "err", err)
			}
		}
	}
	c.vlans = keep
	for name, d := range c.dhcp {
		if _, ok := n.Interfaces[name]; !ok {
			d.cancel()
			delete(c.dhcp, name)
			delete(c.leased, name)
		}
	}
}

// writeResolvConf writes network.dns and then the DNS servers of every
// lease, without repeats, to the resolver file.
func (c *Configurator) writeResolvConf() error {
	if c.resolvConf == "" {
		return nil
	}
	all := slices.Clone(c.dns)
	links := make([]string, 0, len(c.leased))
	for l := range c.leased {
		links = append(links, l)
	}
	slices.Sort(links)
	for _, l := range links {
		for _, a := range c.leased[l] {
			if !slices.Contains(all, a) {
				all = append(all, a)
			}
		}
	}
	var b strings.Builder
	b.WriteString("# written by the umedge init from [network] and DHCP leases\n")
	for _, a := range all {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	// In place, not by rename: the init may have bind-mounted this file
	// over /etc/resolv.conf, and a bind holds the inode. The file is a few
	// hundred bytes, written with one write.
	if err := os.WriteFile(c.resolvConf, []byte(b.String()), 0o644); err != nil { //nolint:gosec // resolvers are public, every process reads them
		return fmt.Errorf("write resolvers: %w", err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
