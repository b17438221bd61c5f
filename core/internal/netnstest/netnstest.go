// Package netnstest builds network namespace labs for tests: a caller
// behind a masquerading router (nftables, fully random source ports) and a
// public side with no route to the caller's private network. Everything it
// makes is removed when the test ends; it needs root, ip (iproute2) and nft
// (nftables), and skips saying why when they are missing.
package netnstest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is a network namespace made with ip netns.
type NS string

// Run runs ip -n ns args..., failing the test on error.
func (n NS) Run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"-n", string(n)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", n, strings.Join(args, " "), err, out)
	}
}

// Exec runs a command inside n, failing the test on error.
func (n NS) Exec(t testing.TB, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", n, name, strings.Join(args, " "), err, out)
	}
}

// Output runs a command inside n and returns its standard output.
func (n NS) Output(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...).Output()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v", n, name, strings.Join(args, " "), err)
	}
	return string(out)
}

// Command is name args... to be started inside n (by ip netns exec, which
// becomes the program: its PID is the program's).
func (n NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...)
}

// Do runs fn on a thread inside n; sockets fn opens stay in n. The thread
// is never given back to the scheduler (the goroutine ends locked).
func (n NS) Do(t testing.TB, fn func()) {
	t.Helper()
	if err := n.In(fn); err != nil {
		t.Fatal(err)
	}
}

// In is Do for goroutines other than the test's: it returns the error of
// entering n instead of failing the test.
func (n NS) In(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+string(n), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer func() { _ = unix.Close(fd) }()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// Available skips the test unless namespaces can be made here: not in
// -short, only as root with ip and nft installed.
func Available(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespaces: not in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian iproute2, nftables; in TEST_DEBS)", tool)
		}
	}
}

// Add makes the namespaces with their loopback up, removed when the test
// ends; it skips the test on a host that cannot make them.
func Add(t testing.TB, ns ...NS) {
	t.Helper()
	for i, n := range ns {
		if out, err := exec.Command("ip", "netns", "add", string(n)).CombinedOutput(); err != nil {
			if i == 0 && strings.Contains(string(out), "not permitted") {
				t.Skipf("this host cannot make network namespaces (no CAP_SYS_ADMIN?): %s", out)
			}
			t.Fatalf("ip netns add %s: %v\n%s", n, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", string(n)).Run() })
		n.Run(t, "link", "set", "lo", "up")
	}
}

// NAT is the lab: Public (where the service under test runs) — Router —
// Caller. The caller's private network is masqueraded behind the router's
// public address with fully random source ports, and Public has no route
// to it.
type NAT struct {
	Public, Router, Caller NS
	PublicAddr             netip.Addr // Public's address on the link to the router
	RouterAddr             netip.Addr // the router's public address: what the service sees
	PrivateAddr            netip.Addr // the caller's address
}

// NewNAT makes the lab, or skips the test when this host cannot.
func NewNAT(t testing.TB) *NAT {
	t.Helper()
	Available(t)
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	x := 16 + rand.IntN(200)
	l := &NAT{Public: NS("um-p-" + tag), Router: NS("um-r-" + tag), Caller: NS("um-c-" + tag),
		PublicAddr:  netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", x)),
		RouterAddr:  netip.MustParseAddr(fmt.Sprintf("198.18.%d.2", x)),
		PrivateAddr: netip.MustParseAddr(fmt.Sprintf("10.%d.0.2", x))}
	Add(t, l.Public, l.Router, l.Caller)
	l.Public.Run(t, "link", "add", "e0", "type", "veth", "peer", "name", "r1", "netns", string(l.Router))
	l.Router.Run(t, "link", "add", "r0", "type", "veth", "peer", "name", "c0", "netns", string(l.Caller))
	l.Public.Run(t, "addr", "add", l.PublicAddr.String()+"/24", "dev", "e0")
	l.Public.Run(t, "link", "set", "e0", "up")
	l.Router.Run(t, "addr", "add", l.RouterAddr.String()+"/24", "dev", "r1")
	l.Router.Run(t, "addr", "add", fmt.Sprintf("10.%d.0.1/24", x), "dev", "r0")
	l.Router.Run(t, "link", "set", "r0", "up")
	l.Router.Run(t, "link", "set", "r1", "up")
	l.Caller.Run(t, "addr", "add", l.PrivateAddr.String()+"/24", "dev", "c0")
	l.Caller.Run(t, "link", "set", "c0", "up")
	l.Caller.Run(t, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", x))
	l.Router.Exec(t, "", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.Router.Exec(t, `table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r1" masquerade random,fully-random
	}
}
`, "nft", "-f", "-")
	return l
}

// UDPTimeout makes the router forget an idle UDP mapping after secs
// seconds, replied or not (the kernel's defaults are 30 s and 120 s).
func (l *NAT) UDPTimeout(t testing.TB, secs int) {
	t.Helper()
	for _, k := range []string{"net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream"} {
		l.Router.Exec(t, "", "sysctl", "-qw", fmt.Sprintf("%s=%d", k, secs))
	}
}
