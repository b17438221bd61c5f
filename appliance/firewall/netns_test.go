package firewall

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/umedge/umedge/appliance/internal/apptest"
	"github.com/umedge/umedge/appliance/internal/nstest"
)

// dropWait is how long a probe that must be dropped waits for an answer
// that would prove it passed; passWait bounds a probe that must pass. The
// peers are two namespaces on one host: an accepted probe answers in
// microseconds, even on a loaded machine in milliseconds.
const (
	dropWait = 400 * time.Millisecond
	passWait = 3 * time.Second
)

// listenAll opens TCP (accept and hold) and UDP (echo) on every port in ns.
func listenAll(t *testing.T, ns *nstest.NS, ports ...int) {
	t.Helper()
	ns.Do(t, func() {
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
				}
			}()
			apptest.ServeUDP(t, fmt.Sprintf(":%d", p), func(b []byte) []byte { return b })
		}
	})
}

// reaches reports whether a TCP connection, or a UDP datagram's echo, gets
// from ns to addr:port within wait; a probe that hears nothing was
// dropped. Any other failure fails the test.
func reaches(t *testing.T, ns *nstest.NS, proto Proto, addr string, port int, wait time.Duration) bool {
	t.Helper()
	var ok bool
	ns.Do(t, func() {
		target := net.JoinHostPort(addr, fmt.Sprint(port))
		c, err := net.DialTimeout(proto.String(), target, wait)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			t.Fatalf("%s %s: %v", proto, target, err)
		}
		defer c.Close()
		if proto == TCP {
			ok = true
			return
		}
		// A datagram may be lost (a link just up): send again every 100 ms.
		buf := make([]byte, 16)
		for end := time.Now().Add(wait); time.Now().Before(end) && !ok; {
			if _, err := c.Write([]byte("probe")); err != nil {
				t.Fatalf("udp %s: %v", target, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			ok = err == nil && string(buf[:n]) == "probe"
		}
	})
	return ok
}

// TestFirewallInNamespace installs the ruleset in a namespace of its own
// and probes it from a second one over a veth pair, on IPv4 and IPv6: the
// configured listeners pass, every other port is dropped, and a reload that
// moves the SIP port moves the rule. IPv6 works only if neighbour
// discovery passes the firewall: the neighbour caches are empty until the
// firewall is in.
func TestFirewallInNamespace(t *testing.T) {
	fw, client := nstest.New(t), nstest.New(t)
	nstest.Veth(t, fw, "fw0", []string{"192.0.2.1/24", "2001:db8::1/64"},
		client, "cl0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	listenAll(t, fw, 5060, 5070, 6000, 16384, 9060)

	// Without a firewall every port answers: the probes can tell.
	if !reaches(t, client, TCP, "192.0.2.1", 6000, passWait) || !reaches(t, client, UDP, "192.0.2.1", 6000, passWait) {
		t.Fatal("port 6000 does not answer before the firewall is in; the probes prove nothing")
	}

	config := func(sipPort int) Ruleset {
		return ruleset(t, fmt.Sprintf(`[sip]
listen = ["192.0.2.1", "2001:db8::1"]
mode = "tcp"
tcp_port = %d
[media]
port_min = 16384
port_max = 16385
[admin]
listen = "0.0.0.0:9060"
allow_remote = true
token_file = %q`, sipPort, tokenFile(t)))
	}
	apply := func(rs Ruleset) {
		if err := Apply(rs, nftables.WithNetNSFd(int(fw.Handle))); err != nil {
			t.Fatal(err)
		}
	}
	type probe struct {
		proto Proto
		port  int
		want  bool
	}
	check := func(step string, probes []probe) {
		t.Helper()
		for _, addr := range []string{"192.0.2.1", "2001:db8::1"} {
			for _, p := range probes {
				wait := dropWait
				if p.want {
					wait = passWait
				}
				if got := reaches(t, client, p.proto, addr, p.port, wait); got != p.want {
					t.Errorf("%s: %s [%s]:%d passes = %v, want %v", step, p.proto, addr, p.port, got, p.want)
				}
			}
		}
	}

	first := config(5060)
	apply(first)
	check("sip on 5060", []probe{
		{TCP, 5060, true}, {UDP, 5060, true}, // Call Router
		{UDP, 16384, true}, {TCP, 16384, false}, // media is UDP only
		{TCP, 5070, false}, {UDP, 5070, false}, {TCP, 6000, false}, {UDP, 6000, false},
	})
	// admin listens on 0.0.0.0: IPv4 only.
	if !reaches(t, client, TCP, "192.0.2.1", 9060, passWait) || reaches(t, client, TCP, "2001:db8::1", 9060, dropWait) {
		t.Error("admin on 0.0.0.0:9060 must pass on IPv4 and only there")
	}

	// What nft reads back from the kernel is what String printed.
	listed := fw.Run(t, "nft", "list", "table", "inet", Table)
	if listed != first.String() {
		t.Errorf("nft list table inet %s after Apply:\n%s\nString():\n%s", Table, listed, first.String())
	}
	// And String, loaded by nft itself into a third namespace, makes the
	// same table that Apply made.
	other := nstest.New(t)
	file := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(first.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	other.Run(t, "nft", "-f", file)
	if got := other.Run(t, "nft", "list", "table", "inet", Table); got != listed {
		t.Errorf("nft -f of String() makes\n%s\nApply made\n%s", got, listed)
	}

	// Reload: the SIP port moves from 5060 to 5070.
	moved := config(5070)
	apply(moved)
	check("sip moved to 5070", []probe{
		{TCP, 5070, true}, {UDP, 5070, true}, {TCP, 5060, false}, {UDP, 5060, false}, {UDP, 16384, true},
	})
	if n := strings.Count(fw.Run(t, "nft", "list", "ruleset"), "table "); n != 1 {
		t.Errorf("after the reload the namespace has %d tables, want 1", n)
	}
	if err := Remove(nftables.WithNetNSFd(int(fw.Handle))); err != nil {
		t.Fatal(err)
	}
	check("removed", []probe{{TCP, 6000, true}})
}

// tokenFile writes an admin token, which a non-loopback admin.listen needs.
func tokenFile(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
