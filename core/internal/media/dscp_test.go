package media

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/umedge/umedge/core/internal/testutil"
)

// The DSCP marking as the peers receive it: what each send path puts on
// the wire, read from the TOS byte (IPv6: traffic class) the receiving
// socket reports (IP_RECVTOS, IPV6_RECVTCLASS). The peers send marked
// otherwise (AF11 with ECN CE), which must not come through.

var testDSCP = DSCP{Audio: 46, Video: 34}

const (
	peerMarking  = 10<<2 | 3 // what the peers send with
	wantAudioTOS = 46 << 2
	wantVideoTOS = 34 << 2
)

// recvTOS has c report the TOS byte of what it receives, and marks what
// it sends with peerMarking.
func recvTOS(t *testing.T, c *net.UDPConn) {
	t.Helper()
	v6 := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Is6()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, peerMarking)
			}
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, peerMarking)
		}
	}); err != nil || serr != nil {
		t.Fatalf("IP_RECVTOS/IPV6_RECVTCLASS: %v %v", err, serr)
	}
}

// readTOS reads one datagram from c and the TOS byte it arrived with.
func readTOS(c *net.UDPConn, d time.Duration) ([]byte, uint8, error) {
	buf, oob := make([]byte, 2048), make([]byte, 128)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, oobn, _, _, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return nil, 0, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, 0, err
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			return buf[:n], m.Data[0], nil
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			return buf[:n], uint8(binary.NativeEndian.Uint32(m.Data)), nil //nolint:gosec // a traffic class
		}
	}
	return nil, 0, fmt.Errorf("no TOS control message in %d bytes", oobn)
}

// exchangeTOS sends n packets each way and fails on one lost, changed or
// not marked want.
func exchangeTOS(t *testing.T, a, b *net.UDPConn, toA, toB netip.AddrPort, n int, seq0 uint16, want uint8) {
	t.Helper()
	exchangeRecv(t, a, b, toA, toB, n, seq0, 0xA, 0xB, func(c *net.UDPConn) ([]byte, error) {
		got, tos, err := readTOS(c, 2*time.Second)
		if err == nil && tos != want {
			err = fmt.Errorf("arrived with TOS %#02x, want %#02x (the peer sent %#02x)", tos, want, peerMarking)
		}
		return got, err
	})
}

// TestDSCPMarking: audio leaves marked EF on every send path, both
// directions, whatever the peer marked: the sockets, the XDP path's frames
// (IPv4's TOS byte, IPv6's traffic class; the test checks they went
// through the XSK) and the kernel fast path's rewrite.
func TestDSCPMarking(t *testing.T) {
	for _, c := range []struct {
		name string
		mode fastpath.Mode
		sp   string
		v6   bool
	}{
		{"socket", fastpath.Off, SendPathSocket, false},
		{"socket/ipv6", fastpath.Off, SendPathSocket, true},
		{"xdp", fastpath.Off, SendPathXDP, false},
		{"xdp/ipv6", fastpath.Off, SendPathXDP, true},
		{"kernel", fastpath.TC, SendPathSocket, false},
		{"kernel/ipv6", fastpath.TC, SendPathSocket, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newOffloadLabFamily(t, c.mode, c.v6, func(cfg *Config) { cfg.SendPath, cfg.DSCP = c.sp, testDSCP })
			recvTOS(t, l.caller)
			recvTOS(t, l.callee)
			s, toA, toB := l.call(t, nil)
			exchangeTOS(t, l.caller, l.callee, toA, toB, 3, 1, wantAudioTOS) // latches, through the sockets
			seq := uint16(10)
			switch {
			case c.mode == fastpath.TC:
				waitPath(t, s, PathKernel)
			case c.sp == SendPathXDP:
				seq = untilXDP(t, l.e, seq, func(seq uint16) error {
					exchangeTOS(t, l.caller, l.callee, toA, toB, 1, seq, wantAudioTOS)
					return nil
				})
			}
			fwd0, xdp0 := forwarded(l.e), l.e.SendPath().Sent
			exchangeTOS(t, l.caller, l.callee, toA, toB, 20, seq, wantAudioTOS)
			if fwd := forwarded(l.e) - fwd0; c.mode == fastpath.TC && fwd < 38 {
				t.Errorf("the kernel forwarded %d of 40 packets: the marking of its rewrite is not what was checked", fwd)
			}
			if x := l.e.SendPath().Sent - xdp0; c.sp == SendPathXDP && x != 40 {
				t.Errorf("%d of 40 packets went through the XSKs", x)
			}
		})
	}
}

// TestDSCPVideo: a video stream is marked with the video code point (its
// sockets are marked at the answer that says it is video), on the
// sockets and in the kernel; its pair, kept idle after the call, comes
// back with audio's for the next call.
func TestDSCPVideo(t *testing.T) {
	for _, mode := range testModes {
		t.Run("fast_path="+string(mode), func(t *testing.T) {
			l := newOffloadLabFamily(t, mode, false, func(cfg *Config) {
				cfg.DSCP = testDSCP
				cfg.PortMax = cfg.PortMin + 3 // the two pairs of one call: the next call reuses them
				cfg.IdleQuarantine = time.Nanosecond
			})
			recvTOS(t, l.caller)
			recvTOS(t, l.callee)
			s := l.session(t, "video", SecurityRTP, nil)
			offerToB, err := s.Offer(SideA, videoSDPv(l.caller, 1))
			if err != nil {
				t.Fatal(err)
			}
			answerToA, err := s.Answer(SideB, videoSDPv(l.callee, 1))
			if err != nil {
				t.Fatal(err)
			}
			toA, _ := mediaAddr(t, answerToA)
			toB, _ := mediaAddr(t, offerToB)
			exchangeTOS(t, l.caller, l.callee, toA, toB, 3, 1, wantVideoTOS)
			waitPath(t, s, l.wantPath())
			exchangeTOS(t, l.caller, l.callee, toA, toB, 10, 10, wantVideoTOS)
			s.Close()

			reused := l.e.Stats().PairsReused
			s2, toA, toB := l.call(t, nil)
			if got := l.e.Stats().PairsReused - reused; got != 2 {
				t.Fatalf("the audio call reused %d of the video call's pairs, want 2", got)
			}
			exchangeTOS(t, l.caller, l.callee, toA, toB, 3, 30, wantAudioTOS)
			waitPath(t, s2, l.wantPath())
			exchangeTOS(t, l.caller, l.callee, toA, toB, 10, 40, wantAudioTOS)
		})
	}
}

// TestDSCPConfig: a code point outside 0..63 is refused, naming which.
func TestDSCPConfig(t *testing.T) {
	for _, d := range []DSCP{{Audio: -1}, {Audio: 64}, {Video: 64}} {
		_, err := New(Config{PortMin: 40000, PortMax: 40099, LatchWindow: time.Second, DSCP: d}, nil)
		if err == nil {
			t.Errorf("DSCP %+v accepted", d)
			continue
		}
		if !strings.Contains(err.Error(), "DSCP") {
			t.Errorf("DSCP %+v: %v does not say which", d, err)
		}
	}
}

// videoSDPv is an offer or answer of one H.264 video stream at c.
func videoSDPv(c *net.UDPConn, version int) []byte {
	return []byte(strings.Replace(string(sdpFor(c, version)), "m=audio", "m=video", 1) + "a=rtpmap:0 H264/90000\r\n")
}

// TestDSCPReinviteMediaChange: re-INVITEs that turn the call's one m-line
// from audio to video and back re-mark its legs, on the sockets and in
// the kernel's entries (installed again with the new TOS byte).
func TestDSCPReinviteMediaChange(t *testing.T) {
	for _, mode := range testModes {
		t.Run("fast_path="+string(mode), func(t *testing.T) {
			l := newOffloadLabFamily(t, mode, false, func(cfg *Config) { cfg.DSCP = testDSCP })
			recvTOS(t, l.caller)
			recvTOS(t, l.callee)
			s, toA, toB := l.call(t, nil)
			exchangeTOS(t, l.caller, l.callee, toA, toB, 3, 1, wantAudioTOS)
			waitPath(t, s, l.wantPath())
			seq := uint16(10)
			for i, st := range []struct {
				sdp  func(*net.UDPConn, int) []byte
				want uint8
			}{{videoSDPv, wantVideoTOS}, {sdpFor, wantAudioTOS}, {videoSDPv, wantVideoTOS}} {
				if _, err := s.Offer(SideA, st.sdp(l.caller, i+2)); err != nil {
					t.Fatalf("re-offer %d: %v", i, err)
				}
				if _, err := s.Answer(SideB, st.sdp(l.callee, i+2)); err != nil {
					t.Fatalf("re-answer %d: %v", i, err)
				}
				exchangeTOS(t, l.caller, l.callee, toA, toB, 3, seq, st.want)
				waitPath(t, s, l.wantPath())
				exchangeTOS(t, l.caller, l.callee, toA, toB, 10, seq+3, st.want)
				seq += 20
			}
		})
	}
}

// TestDSCPRefusedStillCarriesTheCall: a kernel (a sandbox) that refuses
// IP_TOS costs the marking, not the call: the session opens, media flows
// unmarked both ways, and the refusal is said once for the legs' four
// sockets.
func TestDSCPRefusedStillCarriesTheCall(t *testing.T) {
	defer func(f func(int, bool, uint8) error) { setTOS = f }(setTOS)
	setTOS = func(fd int, v6 bool, tos uint8) error {
		if tos != 0 {
			return unix.EPERM
		}
		return setSocketTOS(fd, v6, tos)
	}
	var logs testutil.LockedBuffer
	base := 10000 + 2*rand.IntN(3000)
	e, err := New(Config{PortMin: base, PortMax: base + 7, Workers: 1, LatchWindow: 2 * time.Second, DSCP: testDSCP}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	a, b := newPeer(t), newPeer(t)
	recvTOS(t, a.rtp)
	recvTOS(t, b.rtp)
	_, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	exchangeTOS(t, a.rtp, b.rtp, toA, toB, 3, 1, 0)
	if n := strings.Count(logs.String(), "DSCP marking refused"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
	}
}
