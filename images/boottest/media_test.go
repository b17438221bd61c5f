//go:build integration

package boottest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/images/internal/frame"
)

// The SBC test's segment: the VM's edged on eth0 with a static address,
// the test the caller (a gateway of the router's config) and the callee
// (the one back end of a proxy pool) beside it.
var (
	sbcGuest     = netip.MustParseAddr("10.0.50.2")
	sbcCaller    = netip.MustParseAddr("10.0.50.1")
	sbcCallee    = netip.MustParseAddr("10.0.50.3")
	sbcCallerMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x02, 0x01}
	sbcCalleeMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x02, 0x03}
)

// sbcConfig is the shipped config as an SBC: eth0 at sbcGuest/24, SIP
// there, the sample gateway at sbcCaller, the local pool proxied to a
// UDP back end at sbcCallee:5070, and the kernel fast path off, so that
// userspace relays every packet and sends it the way the shipped
// media.send_path says. No NTP; the firewall stays on.
func sbcConfig(dir string) (string, error) {
	data, err := os.ReadFile(shippedConfig)
	if err != nil {
		return "", err
	}
	s := string(data)
	for _, r := range []struct{ old, new string }{
		{ntpLine, "ntp_servers = []"},
		{`listen = ["::"]`, fmt.Sprintf(`listen = ["%s"]`, sbcGuest)},
		{"[network.interfaces.eth0]\ndhcp = true\n", fmt.Sprintf("[network.interfaces.eth0]\naddresses = [\"%s/24\"]\n", sbcGuest)},
		{`fast_path = "auto"`, `fast_path = "off"`},
		{`send_path = "xdp"`, `send_path = "xdp"`}, // the shipped setting, under test
		{`addresses = ["192.0.2.21"]`, fmt.Sprintf(`addresses = ["%s"]`, sbcCaller)},
		{"[plugins.umrouter.settings.pools.local]\n", "[plugins.umrouter.settings.pools.local]\naction = \"proxy\"\n"},
		{"host = \"127.0.0.1\"\ntcp_port = 5062\ntls_port = 5063\n", fmt.Sprintf("host = \"%s\"\nudp_port = 5070\ntcp_port = 0\ntls_port = 0\n", sbcCallee)},
	} {
		if !strings.Contains(s, r.old) {
			return "", fmt.Errorf("%s has no %q to change for the SBC test; update boottest", shippedConfig, r.old)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	out := filepath.Join(dir, "umedge-sbc.toml")
	return out, os.WriteFile(out, []byte(s), 0o600)
}

// TestIntegrationSBCMediaXDP boots the images' kernel and the shipped
// config as an SBC on qemu's socket network, the test being both the
// calling gateway and the proxied back end: a call goes through edged's
// B2BUA (INVITE, 200, ACK on both legs, BYE), and RTP relayed both ways
// arrives byte for byte from edged's own media ports. After the first
// datagrams (on the sockets, while the next hops resolve) the relay sends
// through an AF_XDP socket on eth0: the console says the XSK is bound,
// and the frames prove it: the kernel gives a DF datagram of an
// unconnected UDP socket the IPv4 ID 0, the XDP path counts its frames'
// IDs up from 1 (xdptx). A kernel without CONFIG_XDP_SOCKETS fails here.
func TestIntegrationSBCMediaXDP(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) { sbcMediaXDP(t, arch) })
	}
}

func sbcMediaXDP(t *testing.T, arch string) {
	needQemu(t, arch)
	a := build(t, arch)
	cfg, err := sbcConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, 0, map[netip.Addr]net.HardwareAddr{sbcCaller: sbcCallerMAC, sbcCallee: sbcCalleeMAC})
	b := p.startVM(t, a, a.initramfsWith(t, cfg, ""), "sbc-"+arch)
	b.expect(t, `UMEDGE READY slot=`, 120*time.Second)
	guestMAC := p.resolve(t, sbcGuest)

	c := &sbcCall{t: t, p: p, guestMAC: guestMAC, calleeMAC: sbcCalleeMAC, id: "xdp-boot-1"}
	toA, toB := c.setUp()
	t.Logf("call up: edged's media %s for the caller, %s for the callee", toA, toB)

	// Round trips until the console says the XSK is bound, then 50 more,
	// every frame of which must come from the XSK.
	seq := uint16(1)
	xsk := make(chan string, 1)
	go func() {
		defer close(xsk)
		ctx := &boot{vm: b.vm, at: b.at}
		if line, err := ctx.waitLine(`media: send path xdp: (XSK bound.*interface=eth0|no XSK)`, 30*time.Second); err == nil {
			xsk <- line
		}
	}()
	var bound string
	for bound == "" {
		c.roundTrip(seq, toA, toB)
		seq++
		select {
		case line, ok := <-xsk:
			if !ok {
				t.Fatalf("no XSK bound on eth0 within 30 s of relaying (%d round trips)", seq)
			}
			if !strings.Contains(line, "XSK bound") {
				t.Fatalf("after %d round trips: %s", seq-1, line)
			}
			bound = line
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("after %d round trips: %s", seq-1, bound)
	time.Sleep(1500 * time.Millisecond) // past the resolver's retry of a hop still on the socket
	var ids []uint16
	for range 50 {
		ids = append(ids, c.roundTrip(seq, toA, toB)...)
		seq++
	}
	for i, id := range ids {
		if id == 0 || (i > 0 && id <= ids[i-1]) {
			t.Fatalf("relayed frame %d of %d has IPv4 ID %d after %d: not from the XSK (the socket's are 0); IDs %v", i, len(ids), id, ids[max(i-1, 0)], ids)
		}
	}
	t.Logf("%d relayed frames through the XSK, IPv4 IDs %d..%d", len(ids), ids[0], ids[len(ids)-1])

	// The callee's box fails over: its address moves to a standby with
	// another MAC, which announces itself by a gratuitous ARP. The relay
	// must follow within a second (the hop's refresh alone would take up
	// to 5 s), through the XSK still.
	c.calleeMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x02, 0x33}
	p.move(sbcCallee, c.calleeMAC)
	garp := frame.EncodeARP(0, frame.ARP{Op: frame.ARPRequest, SenderMAC: c.calleeMAC, SenderIP: sbcCallee, TargetIP: sbcCallee})
	p.send(t, garp)
	moved := time.Now()
	var after time.Duration
	for n := 0; n < 10; seq++ {
		if time.Since(moved) > 3*time.Second {
			t.Fatalf("3 s after the callee's gratuitous ARP its media still goes to its old MAC")
		}
		if time.Since(moved) > time.Second && after == 0 && n == 0 {
			p.send(t, garp) // the first may have come within the entry's locktime
		}
		f := c.relay(seq, netip.AddrPortFrom(sbcCaller, callerRTPPort), netip.AddrPortFrom(sbcCallee, calleeRTPPort), toA, toB, sbcCallerMAC, 0xA)
		if bytes.Equal(f.Dst, c.calleeMAC) {
			if n == 0 {
				after = time.Since(moved)
			}
			n++
		} else if n > 0 {
			t.Fatalf("RTP seq %d went to the old MAC %s after one had gone to the new", seq, f.Dst)
		}
	}
	t.Logf("the callee's failover: its media at the new MAC %v after the gratuitous ARP", after.Round(time.Millisecond))
	if after > time.Second {
		t.Errorf("the callee's media followed its failover only after %v", after)
	}
	time.Sleep(200 * time.Millisecond) // the hop looked up again
	for range 10 {
		for _, id := range c.roundTrip(seq, toA, toB) {
			if id == 0 {
				t.Errorf("after the failover, RTP seq %d left through a socket (IPv4 ID 0), not the XSK", seq)
			}
		}
		seq++
	}
	c.hangUp()
	if line, err := (&boot{vm: b.vm}).waitLine(`send path xdp: no XSK|kick failed`, 0); err == nil {
		t.Errorf("console: %s", line)
	}
}

// resolve asks who has ip, as the caller, and returns its MAC.
func (p *peer) resolve(t *testing.T, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	req := frame.EncodeARP(p.vlan, frame.ARP{Op: frame.ARPRequest, SenderMAC: sbcCallerMAC, SenderIP: sbcCaller, TargetIP: ip})
	f := p.await(t, 10*time.Second, func() { p.send(t, req) }, func(f *frame.Frame) bool {
		return f.ARP != nil && f.ARP.Op == frame.ARPReply && f.ARP.SenderIP == ip
	})
	if f == nil {
		t.Fatalf("no ARP reply for %s", ip)
	}
	return f.ARP.SenderMAC
}

// waitLine is expect without failing: the matching line, or an error at
// timeout (0: only what the console has printed so far).
func (b *boot) waitLine(pattern string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	i, line, err := b.vm.WaitFor(ctx, regexp.MustCompile(pattern), b.at)
	if err != nil {
		return "", err
	}
	b.at = i + 1
	return line, nil
}

// sbcCall is one call through the VM's B2BUA, the test on both ends.
type sbcCall struct {
	t         *testing.T
	p         *peer
	guestMAC  net.HardwareAddr
	calleeMAC net.HardwareAddr // the callee station's, which its failover changes
	id        string
	// Learnt while setting up: the callee leg's dialog (edged's INVITE),
	// the caller leg's 200.
	calleeInvite, callerOK string
}

const (
	sipPort       = 5070
	callerRTPPort = 40000
	calleeRTPPort = 40002
)

// sendSIP sends msg from the station at src:sipPort to edged's 5060.
func (c *sbcCall) sendSIP(src netip.Addr, mac net.HardwareAddr, msg string) {
	c.p.send(c.t, frame.EncodeUDP(c.guestMAC, mac, 0, frame.UDP{
		Src: netip.AddrPortFrom(src, sipPort), Dst: netip.AddrPortFrom(sbcGuest, 5060), Payload: []byte(msg),
	}))
}

func sdpOf(ip netip.Addr, port int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", ip, port)
}

// setUp runs the call's set-up on both legs and returns edged's media
// address of each: where the caller sends (toA) and the callee (toB).
func (c *sbcCall) setUp() (toA, toB netip.AddrPort) {
	t := c.t
	offer := sdpOf(sbcCaller, callerRTPPort)
	invite := fmt.Sprintf("INVITE sip:5000@%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s:%[3]d;branch=z9hG4bK-%[4]s-1;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:1234@%[2]s>;tag=a-%[4]s\r\n"+
		"To: <sip:5000@%[1]s>\r\n"+
		"Call-ID: %[4]s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:1234@%[2]s:%[3]d>\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %[5]d\r\n\r\n%[6]s", sbcGuest, sbcCaller, sipPort, c.id, len(offer), offer)
	var calleeOK string
	acked := false
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	c.sendSIP(sbcCaller, sbcCallerMAC, invite)
	for c.callerOK == "" || !acked {
		select {
		case f, ok := <-c.p.frames:
			if !ok {
				t.Fatal("the VM's segment closed")
			}
			if f.UDP == nil || f.UDP.Src.Addr() != sbcGuest {
				continue
			}
			msg := string(f.UDP.Payload)
			switch f.UDP.Dst {
			case netip.AddrPortFrom(sbcCallee, sipPort):
				switch {
				case strings.HasPrefix(msg, "INVITE "):
					c.calleeInvite = msg
					answer := sdpOf(sbcCallee, calleeRTPPort)
					calleeOK = responseTo(msg, "200 OK", "b-"+c.id, fmt.Sprintf("Contact: <sip:5000@%s:%d>\r\nContent-Type: application/sdp\r\n", sbcCallee, sipPort), answer)
					if toB = mediaOf(t, msg); toB.Addr() != sbcGuest {
						t.Fatalf("edged's offer to the callee names %s, not its own address: %q", toB, msg)
					}
					c.sendSIP(sbcCallee, c.calleeMAC, calleeOK)
				case strings.HasPrefix(msg, "ACK "):
					acked = true
				}
			case netip.AddrPortFrom(sbcCaller, sipPort):
				if strings.HasPrefix(msg, "SIP/2.0 200") && strings.Contains(msg, "INVITE") && c.callerOK == "" {
					c.callerOK = msg
					if toA = mediaOf(t, msg); toA.Addr() != sbcGuest {
						t.Fatalf("edged's answer to the caller names %s, not its own address: %q", toA, msg)
					}
					c.sendSIP(sbcCaller, sbcCallerMAC, c.ack())
				} else if code, _ := strconv.Atoi(statusCode(msg)); code >= 300 {
					t.Fatalf("the caller got %q", firstLine(msg))
				}
			}
		case <-tick.C:
			if c.callerOK == "" {
				c.sendSIP(sbcCaller, sbcCallerMAC, invite)
			}
			if calleeOK != "" && !acked {
				c.sendSIP(sbcCallee, c.calleeMAC, calleeOK)
			}
			if time.Now().After(deadline) {
				t.Fatalf("call not set up in 20 s: caller's 200 %v, callee's leg acknowledged %v", c.callerOK != "", acked)
			}
		}
	}
	return toA, toB
}

// ack is the caller's ACK of edged's 200.
func (c *sbcCall) ack() string {
	return fmt.Sprintf("ACK %[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s:%[3]d;branch=z9hG4bK-%[4]s-ack\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:1234@%[2]s>;tag=a-%[4]s\r\n"+
		"%[5]s\r\n"+
		"Call-ID: %[4]s\r\n"+
		"CSeq: 1 ACK\r\n"+
		"Content-Length: 0\r\n\r\n", contactURI(c.t, c.callerOK), sbcCaller, sipPort, c.id, headerLine(c.callerOK, "To"))
}

// hangUp sends the caller's BYE and answers edged's BYE to the callee:
// both legs must end with a 200.
func (c *sbcCall) hangUp() {
	t := c.t
	bye := fmt.Sprintf("BYE %[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s:%[3]d;branch=z9hG4bK-%[4]s-bye\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:1234@%[2]s>;tag=a-%[4]s\r\n"+
		"%[5]s\r\n"+
		"Call-ID: %[4]s\r\n"+
		"CSeq: 2 BYE\r\n"+
		"Content-Length: 0\r\n\r\n", contactURI(t, c.callerOK), sbcCaller, sipPort, c.id, headerLine(c.callerOK, "To"))
	callerDone, calleeDone := false, false
	f := c.p.await(t, 15*time.Second, func() {
		if !callerDone {
			c.sendSIP(sbcCaller, sbcCallerMAC, bye)
		}
	}, func(f *frame.Frame) bool {
		if f.UDP == nil || f.UDP.Src.Addr() != sbcGuest {
			return false
		}
		msg := string(f.UDP.Payload)
		switch {
		case f.UDP.Dst.Addr() == sbcCaller && strings.HasPrefix(msg, "SIP/2.0 200") && strings.Contains(msg, "BYE"):
			callerDone = true
		case f.UDP.Dst.Addr() == sbcCallee && strings.HasPrefix(msg, "BYE "):
			c.sendSIP(sbcCallee, c.calleeMAC, responseTo(msg, "200 OK", "", "", ""))
			calleeDone = true
		}
		return callerDone && calleeDone
	})
	if f == nil {
		t.Fatalf("BYE: the caller's answered %v, the callee's leg ended %v", callerDone, calleeDone)
	}
}

// roundTrip sends one RTP packet each way (caller → toA, callee → toB) and
// waits for each at the other end, unchanged and from edged's address of
// that leg; it returns the IPv4 IDs of the two relayed frames.
func (c *sbcCall) roundTrip(seq uint16, toA, toB netip.AddrPort) []uint16 {
	caller, callee := netip.AddrPortFrom(sbcCaller, callerRTPPort), netip.AddrPortFrom(sbcCallee, calleeRTPPort)
	there := c.relay(seq, caller, callee, toA, toB, sbcCallerMAC, 0xA)
	back := c.relay(seq, callee, caller, toB, toA, c.calleeMAC, 0xB)
	return []uint16{there.UDP.ID, back.UDP.ID}
}

// relay sends one RTP packet from the station at from (MAC mac) to
// edged's via and returns the frame that relays it to to, from edged's
// out, unchanged.
func (c *sbcCall) relay(seq uint16, from, to, via, out netip.AddrPort, mac net.HardwareAddr, ssrc uint32) *frame.Frame {
	t := c.t
	pkt := make([]byte, 12+160)
	pkt[0] = 0x80
	binary.BigEndian.PutUint16(pkt[2:], seq)
	binary.BigEndian.PutUint32(pkt[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	for i := range 160 {
		pkt[12+i] = byte(seq) ^ byte(i) //nolint:gosec // a pattern
	}
	c.p.send(t, frame.EncodeUDP(c.guestMAC, mac, 0, frame.UDP{Src: from, Dst: via, Payload: pkt}))
	f := c.p.await(t, 5*time.Second, nil, func(f *frame.Frame) bool {
		return f.UDP != nil && f.UDP.Dst == to && f.UDP.Src == out && bytes.Equal(f.UDP.Payload, pkt)
	})
	if f == nil {
		t.Fatalf("RTP seq %d from %s to %s: not relayed from %s in 5 s", seq, from, to, out)
	}
	return f
}

// responseTo answers SIP request req with status, adding a To tag (unless
// "") and the extra header lines and body.
func responseTo(req, status, tag, extra, body string) string {
	var h strings.Builder
	fmt.Fprintf(&h, "SIP/2.0 %s\r\n", status)
	for _, name := range []string{"Via", "From", "To", "Call-ID", "CSeq", "Record-Route"} {
		for _, line := range headerLines(req, name) {
			if name == "To" && tag != "" && !strings.Contains(line, ";tag=") {
				line += ";tag=" + tag
			}
			h.WriteString(line + "\r\n")
		}
	}
	h.WriteString(extra)
	fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return h.String()
}

// headerLines are msg's lines of header name (long form), in order.
func headerLines(msg, name string) []string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if n, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, line)
		}
	}
	return out
}

func headerLine(msg, name string) string {
	if l := headerLines(msg, name); len(l) > 0 {
		return l[0]
	}
	return ""
}

func firstLine(msg string) string { l, _, _ := strings.Cut(msg, "\r\n"); return l }

func statusCode(msg string) string {
	f := strings.Fields(firstLine(msg))
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return ""
	}
	return f[1]
}

// contactURI is the URI of msg's Contact.
func contactURI(t *testing.T, msg string) string {
	t.Helper()
	_, v, _ := strings.Cut(headerLine(msg, "Contact"), ":")
	i, j := strings.Index(v, "<"), strings.Index(v, ">")
	if i < 0 || j < i {
		t.Fatalf("no Contact URI in %q", msg)
	}
	return v[i+1 : j]
}

// mediaOf is the c= address and m=audio port of msg's SDP body.
func mediaOf(t *testing.T, msg string) netip.AddrPort {
	t.Helper()
	_, body, _ := strings.Cut(msg, "\r\n\r\n")
	var addr netip.Addr
	var port int
	for _, line := range strings.Split(body, "\r\n") {
		if v, ok := strings.CutPrefix(line, "c=IN IP4 "); ok {
			addr, _ = netip.ParseAddr(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "m=audio "); ok {
			port, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	if !addr.IsValid() || port <= 0 || port > 65535 {
		t.Fatalf("no IPv4 audio address in the SDP of %q", msg)
	}
	return netip.AddrPortFrom(addr, uint16(port))
}
