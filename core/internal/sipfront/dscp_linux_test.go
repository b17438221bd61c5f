package sipfront

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/netnstest"
	"github.com/umedge/umedge/core/sdk/router"
)

// udpAnswerTOS sends msg to dst from a fresh socket that asks for the TOS
// byte (traffic class) of what it receives, and returns the answer's
// status and TOS byte, as the peer got them.
func udpAnswerTOS(t *testing.T, dst netip.AddrPort, msg string) (status, tos int) {
	t.Helper()
	network, lo, level, opt := "udp4", netip.MustParseAddr("127.0.0.1"), unix.IPPROTO_IP, unix.IP_RECVTOS
	if dst.Addr().Is6() {
		network, lo, level, opt = "udp6", netip.IPv6Loopback(), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil || serr != nil {
		t.Fatalf("ask for the TOS byte: %v %v", err, serr)
	}
	if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, oob := make([]byte, maxDatagram), make([]byte, 128)
	n, oobn, _, _, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		t.Fatalf("no answer from %s: %v", dst, err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	tos = -1
	for _, m := range cmsgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			tos = int(m.Data[0])
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			tos = int(int32(binary.NativeEndian.Uint32(m.Data)))
		}
	}
	if tos < 0 {
		t.Fatalf("answer from %s came without its TOS byte (control messages %v)", dst, cmsgs)
	}
	return statusOf(string(buf[:n])), tos
}

// dscpConfig is startWith's config for port, with dscp.
func dscpConfig(listen string, port, dscp int) Config {
	return Config{
		Listen: []netip.Addr{netip.MustParseAddr(listen)}, UDP: true, TCP: true, TCPPort: port, TLSPort: port + 1,
		IdleTimeout: time.Minute, RetryAfter: 30 * time.Second, FQDN: "edge.test", DSCP: dscp,
	}
}

// The answers of a UDP listener carry the configured DSCP, IPv4 and IPv6,
// and a reload that changes it marks the open socket anew.
func TestDSCPUDP(t *testing.T) {
	for _, listen := range []string{"127.0.0.1", "::1"} {
		t.Run(listen, func(t *testing.T) {
			s, port := startWith(t, &fakeRouter{}, func(c *Config) { c.DSCP = 24 }, listen)
			dst := netip.AddrPortFrom(netip.MustParseAddr(listen), uint16(port))
			for _, tt := range []struct {
				dscp, wantTOS int
			}{{24, 0x60}, {46, 0xb8}, {0, 0}, {63, 0xfc}} {
				if err := s.Apply(dscpConfig(listen, port, tt.dscp)); err != nil {
					t.Fatal(err)
				}
				for _, msg := range []string{optionsOver("UDP"), invite("")} {
					status, tos := udpAnswerTOS(t, dst, msg)
					if status == 0 || tos != tt.wantTOS {
						t.Errorf("dscp %d: answer %d to %.7s with TOS %#02x, want %#02x", tt.dscp, status, msg, tos, tt.wantTOS)
					}
				}
			}
		})
	}
}

// A socket that cannot be marked is a listener that does not open, with
// an error that names it and sip.dscp; the others open.
func TestDSCPRefused(t *testing.T) {
	defer func(f func(fd, tos int) error) { markTOS = f }(markTOS)
	markTOS = func(fd, tos int) error {
		if sa, err := unix.Getsockname(fd); err == nil {
			if _, ok := sa.(*unix.SockaddrInet6); ok {
				return syscall.EPERM
			}
		}
		return nil
	}
	s := New(&fakeRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { _ = s.Close() })
	port := freePort(t)
	cfg := dscpConfig("127.0.0.1", port, 24)
	cfg.Listen = append(cfg.Listen, netip.IPv6Loopback())
	err := s.Apply(cfg)
	if err == nil {
		t.Fatal("Apply() = nil, want the IPv6 listeners refused")
	}
	for _, want := range []string{"udp [::1]:" + strconv.Itoa(port), "tcp [::1]:" + strconv.Itoa(port), "sip.dscp 24", "operation not permitted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Apply() = %q, want it to name %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "[::1]:"+strconv.Itoa(port)); n != 2 {
		t.Errorf("Apply() = %q, names the address %d times, want once a listener", err, n)
	}
	if got := s.Listeners(); len(got) != 2 || !strings.Contains(got[0], "127.0.0.1") || !strings.Contains(got[1], "127.0.0.1") {
		t.Errorf("listeners %v, want udp and tcp on 127.0.0.1", got)
	}
}

// inNetNS names the namespace TestDSCPOnTheWire's child runs in.
const inNetNS = "UMEDGE_SIPFRONT_DSCP_NETNS"

// TCP and TLS carry no TOS byte to the reader, so what went on the wire
// is read off lo by a packet socket, in a namespace of the test's own:
// this test runs itself again in one (its whole process, so that the
// front's dials are made there too).
func TestDSCPOnTheWire(t *testing.T) {
	if os.Getenv(inNetNS) != "" {
		wireTests(t)
		return
	}
	netnstest.Available(t)
	ns := netnstest.NS(fmt.Sprintf("sf-dscp-%04x", rand.IntN(1<<16)))
	netnstest.Add(t, ns)
	cmd := ns.Command(os.Args[0], "-test.run=^TestDSCPOnTheWire$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), inNetNS+"="+string(ns))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDSCPOnTheWire") {
		t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
	}
	t.Logf("in namespace %s:\n%s", ns, out)
}

// wireTests is TestDSCPOnTheWire in its namespace.
func wireTests(t *testing.T) {
	t.Helper()
	pki, err := devpki.Write(t.TempDir(), "edge.test", "gw.test")
	if err != nil {
		t.Fatal(err)
	}
	cp := newLoCapture(t)

	// The answers on a connection the front accepted, its SYN-ACK too,
	// and after a reload on the same connection.
	for _, tp := range []string{"TCP", "TLS"} {
		for _, listen := range []string{"127.0.0.1", "::1"} {
			t.Run("accepted "+tp+" "+listen, func(t *testing.T) {
				var cfg Config
				s, port := startWith(t, &fakeRouter{}, func(c *Config) {
					c.DSCP = 24
					c.TLS, c.TLSConfig = true, serverTLS(t, pki)
					cfg = *c
				}, listen)
				sport := port
				if tp == "TLS" {
					sport = port + 1
				}
				cp.drain(t)
				raw := dialFrom(t, listen, listen, sport)
				defer raw.Close()
				c := raw
				if tp == "TLS" {
					c = clientTLS(t, raw, pki)
				}
				rd := bufio.NewReader(c)
				ask := func() {
					t.Helper()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Write([]byte(optionsOver(tp))); err != nil {
						t.Fatal(err)
					}
					if line, err := rd.ReadString('\n'); err != nil || statusOf(line) != 200 {
						t.Fatalf("answer %q, %v; want 200", line, err)
					}
					if _, err := rd.Discard(rd.Buffered()); err != nil {
						t.Fatal(err)
					}
				}
				from := func(src, _ uint16) bool { return int(src) == sport }
				ask()
				cp.expect(t, "before the reload", from, 0x60)
				cfg.DSCP = 46
				if err := s.Apply(cfg); err != nil {
					t.Fatal(err)
				}
				ask()
				cp.expect(t, "after the reload", from, 0xb8)
			})
		}
	}

	// A connection the front opens for the B2BUA: its SYN too, and after
	// a reload on the same connection. The peer's own segments (its
	// SYN-ACK at least), not marked, show that the capture tells them
	// apart.
	for _, listen := range []string{"127.0.0.1", "::1"} {
		t.Run("dialled TCP "+listen, func(t *testing.T) {
			var cfg Config
			s, _ := startWith(t, &fakeRouter{}, func(c *Config) { c.DSCP = 24; cfg = *c }, listen)
			ln, err := net.Listen("tcp", net.JoinHostPort(listen, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peer := ln.Addr().(*net.TCPAddr).AddrPort()
			cp.drain(t)
			msg := optionsOver("TCP")
			if err := s.Send(router.TCP, peer, "", []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, len(msg))
			read := func() {
				t.Helper()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
					t.Fatal(err)
				}
			}
			to := func(_, dst uint16) bool { return dst == peer.Port() }
			fromPeer := func(src, _ uint16) bool { return src == peer.Port() }
			read()
			cp.expect(t, "before the reload", to, 0x60, fromPeer, 0)
			cfg.DSCP = 10
			if err := s.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(router.TCP, peer, "", []byte(msg)); err != nil {
				t.Fatal(err)
			}
			read()
			cp.expect(t, "after the reload", to, 0x28)
		})
	}

	// A dual-stack listener answers an IPv4 peer (a v4-mapped address
	// on its IPv6 socket) with IP_TOS, not the traffic class.
	t.Run("udp dual-stack ipv4 peer", func(t *testing.T) {
		_, port := startWith(t, &fakeRouter{}, func(c *Config) { c.DSCP = 24 }, "::")
		for _, dst := range []string{"127.0.0.1", "::1"} {
			status, tos := udpAnswerTOS(t, netip.AddrPortFrom(netip.MustParseAddr(dst), uint16(port)), optionsOver("UDP"))
			if status != 200 || tos != 0x60 {
				t.Errorf("to %s: answer %d with TOS %#02x, want 200 with 0x60", dst, status, tos)
			}
		}
	})
}

// loCapture reads every frame on lo, out and in, off a packet socket.
type loCapture struct{ fd int }

func newLoCapture(t *testing.T) *loCapture {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		t.Fatalf("bind to lo: %v", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	return &loCapture{fd: fd}
}

// segment is a TCP segment seen leaving a socket on lo.
type segment struct {
	src, dst uint16
	tos      int
	flags    byte
}

// drain returns the TCP segments captured so far, each once (as sent).
func (c *loCapture) drain(t *testing.T) []segment {
	t.Helper()
	var out []segment
	buf := make([]byte, 1<<16)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue // lo shows each frame twice: as sent, and as received
		}
		if s, ok := parseSegment(buf[:n]); ok {
			out = append(out, s)
		}
	}
}

// expect checks the segments captured since the last drain: at least
// one matches each match, and every one that does has its TOS byte.
// Pairs of match and TOS byte follow what.
func (c *loCapture) expect(t *testing.T, what string, pairs ...any) {
	t.Helper()
	segs := c.drain(t)
	for i := 0; i+1 < len(pairs); i += 2 {
		match, want := pairs[i].(func(src, dst uint16) bool), pairs[i+1].(int)
		n := 0
		for _, s := range segs {
			if !match(s.src, s.dst) {
				continue
			}
			n++
			if s.tos != want {
				t.Errorf("%s: segment %d→%d flags %#02x with TOS %#02x, want %#02x", what, s.src, s.dst, s.flags, s.tos, want)
			}
		}
		if n == 0 {
			t.Errorf("%s: no segment captured of %d (want TOS %#02x)", what, len(segs), want)
		}
	}
}

// parseSegment reads an Ethernet frame (lo's header is one, zeroed) with
// IPv4 or IPv6 and TCP in it.
func parseSegment(b []byte) (segment, bool) {
	if len(b) < 14 {
		return segment{}, false
	}
	var tcp []byte
	var tos int
	switch binary.BigEndian.Uint16(b[12:14]) {
	case unix.ETH_P_IP:
		ip := b[14:]
		if len(ip) < 20 || ip[9] != unix.IPPROTO_TCP {
			return segment{}, false
		}
		tos, tcp = int(ip[1]), ip[int(ip[0]&0x0f)*4:]
	case unix.ETH_P_IPV6:
		ip := b[14:]
		if len(ip) < 40 || ip[6] != unix.IPPROTO_TCP {
			return segment{}, false
		}
		tos, tcp = int(ip[0]&0x0f)<<4|int(ip[1]>>4), ip[40:]
	default:
		return segment{}, false
	}
	if len(tcp) < 20 {
		return segment{}, false
	}
	return segment{src: binary.BigEndian.Uint16(tcp[0:2]), dst: binary.BigEndian.Uint16(tcp[2:4]), tos: tos, flags: tcp[13]}, true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
