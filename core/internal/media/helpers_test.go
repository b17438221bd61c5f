package media

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestEngine starts an engine on a random even port range of pairs
// pairs (several worktrees run tests at once; busy pairs are skipped).
func newTestEngine(t testing.TB, pairs int, mod func(*Config)) *Engine {
	t.Helper()
	// Below 16384: above it lie edged's default media range (its
	// integration tests run beside these), SIPp's ports (sipptest draws
	// from 20000..32000) and the kernel's ephemeral range (32768 up, where
	// the peers' sockets land). A range as small as a test's, with one
	// port taken by a neighbour, would decline a stream now and then.
	base := 10000 + 2*rand.IntN(3000)
	cfg := Config{PortMin: base, PortMax: base + 2*pairs - 1, Workers: 2, LatchWindow: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// peer is a test endpoint: one UDP socket for RTP (and one for RTCP).
type peer struct {
	t    testing.TB
	rtp  *net.UDPConn
	rtcp *net.UDPConn
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	return newPeerOn(t, net.IPv4(127, 0, 0, 1))
}

// newPeerOn is a test endpoint on another loopback address, ip: a host
// other than the usual peers' 127.0.0.1.
func newPeerOn(t testing.TB, ip net.IP) *peer {
	t.Helper()
	p := &peer{t: t}
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 {
			c.Close()
			continue
		}
		c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: port + 1})
		if err != nil {
			c.Close()
			continue
		}
		p.rtp, p.rtcp = c, c2
		t.Cleanup(func() { c.Close(); c2.Close() })
		return p
	}
	t.Fatal("no even/odd port pair for a test peer")
	return nil
}

func (p *peer) addr() netip.AddrPort { return p.rtp.LocalAddr().(*net.UDPAddr).AddrPort() }

// offer is an SDP body from p with the given profile and extra attribute
// lines for the audio stream.
func (p *peer) sdp(proto string, formats string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=peer 1 1 IN IP4 10.9.9.9\r\ns=secret-inside\r\nc=IN IP4 %s\r\nt=0 0\r\n", p.addr().Addr())
	fmt.Fprintf(&b, "m=audio %d %s %s\r\n", p.addr().Port(), proto, formats)
	for _, l := range extra {
		b.WriteString("a=" + l + "\r\n")
	}
	return []byte(b.String())
}

// rtpPacket builds an RTP packet with a 160-byte payload.
func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32) []byte {
	b := make([]byte, 172)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	for i := 12; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// recv reads one datagram or fails after d.
func recv(t testing.TB, c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort) {
	t.Helper()
	b, from, err := tryRecv(c, d)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return b, from
}

func tryRecv(c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	return buf[:n], from, err
}

// mediaAddr is the c= address and m= port of the first audio stream of
// body, as a peer reads them.
func mediaAddr(t testing.TB, body []byte) (netip.AddrPort, *sdp.SessionDescription) {
	t.Helper()
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(body); err != nil {
		t.Fatalf("the engine wrote SDP pion cannot parse: %v\n%s", err, body)
	}
	a, err := netip.ParseAddr(sd.ConnectionInformation.Address.Address)
	if err != nil {
		t.Fatalf("c= %q: %v", sd.ConnectionInformation.Address.Address, err)
	}
	return netip.AddrPortFrom(a, uint16(sd.MediaDescriptions[0].MediaName.Port.Value)), sd
}

// attr returns the values of the audio stream's attribute key.
func attr(sd *sdp.SessionDescription, key string) []string {
	var out []string
	for _, a := range sd.MediaDescriptions[0].Attributes {
		if a.Key == key {
			out = append(out, a.Value)
		}
	}
	return out
}

// call sets up a session between two test peers with the given profiles:
// A offers body, B answers answerBody (built by the callback from the offer
// B received). It returns the session and the addresses each peer must
// send to.
func call(t testing.TB, e *Engine, pa, pb LegProfile, offer []byte, answer func(offerToB []byte) []byte) (s *Session, toA, toB netip.AddrPort, offerToB, answerToA []byte) {
	t.Helper()
	s, err := e.NewSession("call-"+t.Name(), pa, pb, nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(s.Close)
	offerToB, err = s.Offer(SideA, offer)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	answerToA, err = s.Answer(SideB, answer(offerToB))
	if err != nil {
		t.Fatalf("Answer: %v\noffer to B:\n%s", err, offerToB)
	}
	toB, _ = mediaAddr(t, offerToB) // where B sends: the engine's B-leg address
	toA, _ = mediaAddr(t, answerToA)
	return s, toA, toB, offerToB, answerToA
}

var plain = LegProfile{Local: loopback, Security: SecurityRTP}
