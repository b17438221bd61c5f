package netcfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// dhcpClient is the DHCPv4 client of one link, running in its own goroutine.
type dhcpClient struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has ended
	bound  chan struct{} // closed at the first lease
}

// stop ends the client and waits for it; c.mu must not be held, since the
// client takes it to install a lease. Under c.mu, cancel it instead.
func (d *dhcpClient) stop() {
	d.cancel()
	<-d.done
}

// Why a lease was not installed.
var (
	errNoAddress = errors.New("lease offers no usable address")
	errStopped   = errors.New("DHCP stopped")
)

// Without these in the lease, an hour's lease is renewed at half of it.
const (
	defaultLease = time.Hour
	retryMin     = time.Second
	retryMax     = time.Minute
)

// syncDHCP starts or stops the DHCP client of link name. c.mu is held.
func (c *Configurator) syncDHCP(ctx context.Context, name string, want bool) error {
	d, running := c.dhcp[name]
	switch {
	case want && !running:
		// The client's packet socket is opened here, in the caller's
		// network namespace, not in the goroutine below.
		cl, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		if err != nil {
			return fmt.Errorf("start DHCP client on %s: %w", name, err)
		}
		ctx, cancel := context.WithCancel(ctx)
		d = &dhcpClient{cancel: cancel, done: make(chan struct{}), bound: make(chan struct{})}
		c.dhcp[name] = d
		go c.runDHCP(ctx, name, cl, d)
	case !want && running:
		d.cancel() // it sees it is no longer c.dhcp[name] and installs nothing more
		delete(c.dhcp, name)
		delete(c.leased, name)
	}
	return nil
}

// WaitDHCP waits until every running DHCP client holds a lease, or ctx ends.
func (c *Configurator) WaitDHCP(ctx context.Context) error {
	c.mu.Lock()
	var waits []chan struct{}
	for _, d := range c.dhcp {
		waits = append(waits, d.bound)
	}
	c.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("wait for DHCP leases: %w", ctx.Err())
		}
	}
	return nil
}

// runDHCP takes a lease and keeps it: it renews at T1 and, when a renewal
// fails, starts over with a DISCOVER after a backoff. The address is
// installed with the lease's lifetime, so the kernel drops it if the
// lease runs out unrenewed.
func (c *Configurator) runDHCP(ctx context.Context, name string, cl *nclient4.Client, d *dhcpClient) {
	defer close(d.done)
	defer func() { _ = cl.Close() }()
	var lease *nclient4.Lease
	var held netip.Prefix
	retry := retryMin
	for ctx.Err() == nil {
		var err error
		if lease == nil {
			lease, err = cl.Request(ctx)
		} else {
			lease, err = cl.Renew(ctx, lease)
		}
		if err == nil {
			held, err = c.applyLease(name, d, lease, held)
		}
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("DHCP", "link", name, "err", err, "retry_in", retry)
			}
			lease = nil
			sleep(ctx, retry)
			retry = min(2*retry, retryMax)
			continue
		}
		retry = retryMin
		select {
		case <-d.bound:
		default:
			close(d.bound)
		}
		sleep(ctx, renewAfter(lease.ACK))
	}
}

// renewAfter is T1 of the lease: the server's renewal time when it is
// inside the lease, else half the lease (RFC 2131 §4.4.5), and never
// under retryMin: a server that says 0 would have the client renew in a
// tight loop.
func renewAfter(ack *dhcpv4.DHCPv4) time.Duration {
	lt := ack.IPAddressLeaseTime(defaultLease)
	t1 := ack.IPAddressRenewalTime(lt / 2)
	if t1 <= 0 || t1 >= lt {
		t1 = lt / 2
	}
	return max(t1, retryMin)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// applyLease installs the leased address (replacing held, the previous
// one), the default route through the lease's router, and its resolvers.
func (c *Configurator) applyLease(name string, d *dhcpClient, lease *nclient4.Lease, held netip.Prefix) (netip.Prefix, error) {
	ack := lease.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsGlobalUnicast() {
		return held, fmt.Errorf("%w: %v from %s", errNoAddress, ack.YourIPAddr, ack.ServerIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	// A mask that is no prefix (255.0.255.0) has Size 0: the address
	// would be a /0, every IPv4 destination on-link.
	bits, size := mask.Size()
	if size != 32 || bits == 0 {
		return held, fmt.Errorf("%w: netmask %v from %s is not a prefix of 1 to 32 bits", errNoAddress, net.IP(mask), ack.ServerIPAddr)
	}
	p := netip.PrefixFrom(ip, bits)
	// netlink takes a lifetime of 0 as none: the address would stay for
	// ever. A lease under a second is no lease.
	secs := int(ack.IPAddressLeaseTime(defaultLease) / time.Second)
	if secs < 1 {
		return held, fmt.Errorf("%w: lease of %d s from %s", errNoAddress, secs, ack.ServerIPAddr)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dhcp[name] != d {
		return held, errStopped // Apply dropped the link meanwhile
	}
	link, err := c.h.LinkByName(name)
	if err != nil {
		return held, err
	}
	if err := c.h.AddrReplace(link, &netlink.Addr{IPNet: ipNet(p), ValidLft: secs, PreferedLft: secs}); err != nil {
		return held, fmt.Errorf("add leased %s: %w", p, err)
	}
	if held.IsValid() && held != p {
		_ = c.h.AddrDel(link, &netlink.Addr{IPNet: ipNet(held)}) // gone already if it expired
	}
	if routers := ack.Router(); len(routers) > 0 {
		// 0.0.0.0 would make the default route on-link: every
		// destination ARPed for on this link.
		r, ok := netip.AddrFromSlice(routers[0].To4())
		if !ok || !(r.IsGlobalUnicast() || r.IsLinkLocalUnicast()) || r == ip {
			c.log.Warn("DHCP router ignored: not a unicast address of another host", "link", name, "router", routers[0])
		} else {
			gw := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: routers[0]}
			if err := c.h.RouteReplace(gw); err != nil {
				return p, fmt.Errorf("default route via %s: %w", routers[0], err)
			}
		}
	}
	var dns []netip.Addr
	for _, s := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(s.To4()); ok {
			dns = append(dns, a)
		}
	}
	c.leased[name] = dns
	c.log.Info("DHCP lease", "link", name, "address", p, "router", ack.Router(), "dns", dns, "lease", time.Duration(secs)*time.Second)
	return p, c.writeResolvConf()
}
