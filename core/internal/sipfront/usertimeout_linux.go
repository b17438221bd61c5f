package sipfront

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout has the kernel abort c when data it sent stays
// unacknowledged, or the peer's receive window stays closed, for longer
// than d (TCP_USER_TIMEOUT, RFC 5482; zero windows count since Linux 5.10).
// The write deadline covers what is still in the send queue; this covers
// what the kernel has already taken, which would otherwise sit there until
// the idle timeout.
func setUserTimeout(c *net.TCPConn, d time.Duration) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	}); err != nil {
		return err
	}
	return serr
}
