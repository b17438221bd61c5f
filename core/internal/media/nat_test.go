package media

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/netnstest"
)

// netns is a namespace of the labs of offload_test.go, on netnstest.
type netns string

func (n netns) run(t *testing.T, args ...string) {
	t.Helper()
	netnstest.NS(n).Run(t, args...)
}

// output is what ip args prints in n.
func (n netns) output(t *testing.T, args ...string) string {
	t.Helper()
	return netnstest.NS(n).Output(t, "ip", args...)
}

// sysctl sets key to val in n.
func (n netns) sysctl(t *testing.T, key, val string) {
	t.Helper()
	netnstest.NS(n).Exec(t, "", "sysctl", "-qw", key+"="+val)
}

// do runs fn on a thread inside n; sockets fn opens stay in n.
func (n netns) do(t *testing.T, fn func()) {
	t.Helper()
	netnstest.NS(n).Do(t, fn)
}

// addNetns makes the namespaces, loopback up, removed when the test ends;
// it skips the test on a host that cannot make them.
func addNetns(t *testing.T, ns ...netns) {
	t.Helper()
	for _, n := range ns {
		netnstest.Add(t, netnstest.NS(n))
	}
}

func natLabAvailable(t *testing.T) {
	t.Helper()
	netnstest.Available(t)
}

// TestNATLatching puts the caller in a namespace behind a masquerading
// router namespace (nftables, fully random source ports). The caller
// announces its private address in SDP; the engine, in a third namespace
// with no route to that address, learns the router's public mapping from
// the first packet and two-way audio flows.
func TestNATLatching(t *testing.T) {
	lab := netnstest.NewNAT(t)
	engineNS, callerNS := lab.Public, lab.Caller
	public, routerPublic, private := lab.PublicAddr, lab.RouterAddr, lab.PrivateAddr

	e := newTestEngine(t, 8, nil)
	var s *Session
	var caller, callee *net.UDPConn
	var err error
	callerNS.Do(t, func() { caller, err = net.ListenUDP("udp4", &net.UDPAddr{IP: private.AsSlice(), Port: 40000}) })
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	engineNS.Do(t, func() {
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
