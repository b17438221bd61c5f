package media

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DSCP is the Differentiated Services code point (RFC 2474) the engine
// marks what it sends with, by the stream's media: Audio for audio and
// T.38 fax (and their RTCP), Video for video. Each is 0..63; the zero
// value marks nothing (best effort). The whole TOS byte (IPv6: traffic
// class) is the code point << 2 with ECN not-ECT, on every send path: the
// leg's sockets, the XDP path's frames and the kernel fast path's
// rewrite, so a call's marking does not change when it is offloaded, and
// whatever a peer marked is not carried across the border (doc.go,
// "Marking").
type DSCP struct {
	Audio, Video int
}

// validate checks both code points.
func (d DSCP) validate() error {
	for _, c := range []struct {
		name string
		v    int
	}{{"audio", d.Audio}, {"video", d.Video}} {
		if c.v < 0 || c.v > 63 {
			return fmt.Errorf("%w: %s DSCP %d: want 0..63", ErrConfig, c.name, c.v)
		}
	}
	return nil
}

// tos is the TOS byte of a stream of media (audio, video, image).
func (d DSCP) tos(media string) uint8 {
	if media == "video" {
		return uint8(d.Video << 2) //nolint:gosec // 0..63, validated
	}
	return uint8(d.Audio << 2) //nolint:gosec // 0..63, validated
}

// setTOS marks what fd (of family v6 or IPv4) sends with the TOS byte
// tos (a variable for the test of a kernel that refuses it).
var setTOS = setSocketTOS

func setSocketTOS(fd int, v6 bool, tos uint8) error {
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, int(tos)); err != nil {
			return fmt.Errorf("set IPV6_TCLASS %#02x: %w", tos, err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, int(tos)); err != nil {
		return fmt.Errorf("set IP_TOS %#02x: %w", tos, err)
	}
	return nil
}

// mark gives l's sockets the TOS byte of a stream of media, when it is
// not what they have: audio's when they open, then at an answer, which
// says what the stream is. Marking is best effort: sockets the kernel
// refuses it (a sandbox without it) keep theirs and carry the call all
// the same, said once per engine. Called with the session's mutex held,
// or before the leg is the session's.
func (l *leg) mark(d DSCP, media string) {
	tos := d.tos(media)
	if tos == l.tos || l.rtp == nil {
		return
	}
	if err := l.setTOS(tos); err != nil {
		if e := l.sess.e; !e.markWarned.Swap(true) {
			e.log.Warn("media: DSCP marking refused, sockets keep theirs (said once)", "call_id", l.sess.id, "leg", l.side.String(), "media", media, "err", err)
		}
		return
	}
	l.tos = tos
}

// setTOS sets the TOS byte of both of l's sockets, or of neither: when
// the second refuses, the first gets l.tos back, so that what the sockets
// send stays what the XDP path's frames and the kernel's entries send.
func (l *leg) setTOS(tos uint8) error {
	v6 := l.prof.Local.Is6()
	if err := setTOS(l.rtp.fd, v6, tos); err != nil {
		return err
	}
	if err := setTOS(l.rtcp.fd, v6, tos); err != nil {
		_ = setTOS(l.rtp.fd, v6, l.tos)
		return err
	}
	return nil
}
