// Package nstest gives tests network namespaces of their own: created,
// wired with veth pairs, entered for a function call, and deleted at the
// end of the test. Traffic between them never leaves the host.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace (/run/netns/Name), so that tools such
// as nft can be run in it with `ip netns exec`.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// New creates a namespace with its loopback up. It skips the test when the
// host cannot make namespaces (not root, or no CAP_SYS_ADMIN).
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NS{Name: "umedge-test-" + hex.EncodeToString(b)}

	var h netns.NsHandle
	var err error
	onThread(t, func() { h, err = netns.NewNamed(ns.Name) }) // moves the thread into it
	if err != nil {
		if os.IsPermission(err) {
			t.Skipf("cannot create a network namespace: %v", err)
		}
		t.Fatalf("create netns: %v", err)
	}
	ns.Handle = h
	t.Cleanup(func() {
		_ = h.Close()
		if err := netns.DeleteNamed(ns.Name); err != nil {
			t.Errorf("delete netns %s: %v", ns.Name, err)
		}
	})
	nl := ns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("netns %s: lo up: %v", ns.Name, err)
	}
	return ns
}

// Do runs fn on an OS thread inside the namespace. Sockets fn creates stay
// in the namespace after Do returns.
func (ns *NS) Do(t testing.TB, fn func()) {
	t.Helper()
	onThread(t, func() {
		if err := netns.Set(ns.Handle); err != nil {
			t.Fatalf("enter netns %s: %v", ns.Name, err)
		}
		fn()
	})
}

// onThread runs fn on a locked OS thread and puts the thread back into the
// test's namespace afterwards, whatever fn did to it.
func onThread(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("current netns: %v", err)
	}
	defer func() { _ = orig.Close() }()
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the test's netns: " + err.Error()) // the thread is unusable
		}
	}()
	fn()
}

// Netlink returns a netlink handle bound to the namespace.
func (ns *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Run runs a command inside the namespace and returns its output; a
// failure fails the test.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %v: %v\n%s", ns.Name, name, args, err, out)
	}
	return string(out)
}

// Veth links a and b with a veth pair named aName (in a) and bName (in b),
// puts the CIDR addresses on each end and sets both up. IPv6 addresses skip
// duplicate address detection, so they are usable at once.
func Veth(t testing.TB, a *NS, aName string, aAddrs []string, b *NS, bName string, bAddrs []string) {
	t.Helper()
	na, nb := a.Netlink(t), b.Netlink(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b.Handle)}
	if err := na.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s/%s: %v", aName, bName, err)
	}
	setup := func(h *netlink.Handle, name string, addrs []string) {
		link, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		for _, s := range addrs {
			ip, ipnet, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatalf("address %q: %v", s, err)
			}
			ipnet.IP = ip
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet, Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatalf("address %s on %s: %v", s, name, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatalf("%s up: %v", name, err)
		}
	}
	setup(na, aName, aAddrs)
	setup(nb, bName, bAddrs)
}
