package sipfront

import (
	"net"
	"syscall"
)

// setBuffers sizes a UDP socket's buffers. A burst of INVITEs must not be
// dropped by the kernel before a reader gets to it; net.core.rmem_max caps
// SO_RCVBUF, so with CAP_NET_ADMIN (the appliance runs edged with it) the
// FORCE variants are tried first.
func setBuffers(c *net.UDPConn, size int) (rcv int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	cerr := raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF}, {syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF}} {
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt[0], size); e != nil {
				if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt[1], size); e != nil && err == nil {
					err = e
				}
			}
		}
		// The kernel reports double the requested size (bookkeeping).
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		rcv /= 2
	})
	if cerr != nil {
		return 0, cerr
	}
	return rcv, err
}
