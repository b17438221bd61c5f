package media

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace the test made with ip netns.
type netns string

func (n netns) run(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"-n", string(n)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", n, strings.Join(args, " "), err, out)
	}
}

// do runs fn on a thread inside n; sockets fn opens stay in n. The thread
// is never given back to the scheduler (the goroutine ends locked).
func (n netns) do(t *testing.T, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+string(n), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n, err)
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// addNetns makes the namespaces, loopback up, removed when the test ends;
// it skips the test on a host that cannot make them.
func addNetns(t *testing.T, ns ...netns) {
	t.Helper()
	for i, n := range ns {
		if out, err := exec.Command("ip", "netns", "add", string(n)).CombinedOutput(); err != nil {
			if i == 0 && strings.Contains(string(out), "not permitted") {
				t.Skipf("this host cannot make network namespaces (no CAP_SYS_ADMIN?): %s", out)
			}
			t.Fatalf("ip netns add %s: %v\n%s", n, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", string(n)).Run() })
		n.run(t, "link", "set", "lo", "up")
	}
}

func natLabAvailable(t *testing.T) {
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

// TestNATLatching puts the caller in a namespace behind a masquerading
// router namespace (nftables, fully random source ports). The caller
// announces its private address in SDP; the engine, in a third namespace
// with no route to that address, learns the router's public mapping from
// the first packet and two-way audio flows.
func TestNATLatching(t *testing.T) {
	natLabAvailable(t)
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	x := 16 + rand.IntN(200)
	engineNS, routerNS, callerNS := netns("um-e-"+tag), netns("um-r-"+tag), netns("um-c-"+tag)
	addNetns(t, engineNS, routerNS, callerNS)
	public := netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", x))
	routerPublic := netip.MustParseAddr(fmt.Sprintf("198.18.%d.2", x))
	private := netip.MustParseAddr(fmt.Sprintf("10.%d.0.2", x))
	engineNS.run(t, "link", "add", "e0", "type", "veth", "peer", "name", "r1", "netns", string(routerNS))
	routerNS.run(t, "link", "add", "r0", "type", "veth", "peer", "name", "c0", "netns", string(callerNS))
	engineNS.run(t, "addr", "add", public.String()+"/24", "dev", "e0")
	engineNS.run(t, "link", "set", "e0", "up")
	routerNS.run(t, "addr", "add", routerPublic.String()+"/24", "dev", "r1")
	routerNS.run(t, "addr", "add", fmt.Sprintf("10.%d.0.1/24", x), "dev", "r0")
	routerNS.run(t, "link", "set", "r0", "up")
	routerNS.run(t, "link", "set", "r1", "up")
	callerNS.run(t, "addr", "add", private.String()+"/24", "dev", "c0")
	callerNS.run(t, "link", "set", "c0", "up")
	callerNS.run(t, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", x))
	if out, err := exec.Command("ip", "netns", "exec", string(routerNS), "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward: %v\n%s", err, out)
	}
	nft := exec.Command("ip", "netns", "exec", string(routerNS), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r1" masquerade fully-random
	}
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}

	e := newTestEngine(t, 8, nil)
	var s *Session
	var caller, callee *net.UDPConn
	var err error
	callerNS.do(t, func() { caller, err = net.ListenUDP("udp4", &net.UDPAddr{IP: private.AsSlice(), Port: 40000}) })
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	engineNS.do(t, func() {
		if callee, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}); err != nil {
			return
		}
		s, err = e.NewSession("nat", LegProfile{Local: public, Security: SecurityRTP}, plain, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	defer s.Close()

	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n", private)
	offerToB, err := s.Offer(SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	answerToA, err := s.Answer(SideB, []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ := mediaAddr(t, answerToA)
	toB, _ := mediaAddr(t, offerToB)
	if toA.Addr() != public {
		t.Fatalf("the answer to the caller announces %s, want %s", toA.Addr(), public)
	}

	// Before the caller speaks, the callee's media goes to the private
	// address the SDP named: unreachable from the engine.
	callee.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	if _, _, err := tryRecv(caller, 200*time.Millisecond); err == nil {
		t.Fatal("the caller got media before latching: is the lab leaking a route?")
	}
	for i := range 10 {
		pkt := rtpPacket(0, uint16(10+i), uint32(160*i), 0xA)
		if _, err := caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		if got, _ := recv(t, callee, 2*time.Second); !bytes.Equal(got, pkt) {
			t.Fatal("callee got another packet")
		}
		back := rtpPacket(0, uint16(20+i), uint32(160*i), 0xB)
		callee.WriteToUDPAddrPort(back, toB)
		got, from := recv(t, caller, 2*time.Second)
		if !bytes.Equal(got, back) || from != toA {
			t.Fatalf("caller got %d bytes from %s, want the callee's packet from %s", len(got), from, toA)
		}
	}
	st := s.Stats().Legs[SideA]
	if st.Remote.Addr() != routerPublic {
		t.Errorf("latched %s, want the router's public address %s", st.Remote, routerPublic)
	}
	t.Logf("caller %s:40000 announced, latched %s (port chosen by the NAT)", private, st.Remote)
}
