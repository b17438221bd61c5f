//go:build !linux

package sipfront

import "net"

// setBuffers sizes a UDP socket's buffers as far as the system allows.
func setBuffers(c *net.UDPConn, size int) (int, error) {
	if err := c.SetReadBuffer(size); err != nil {
		return 0, err
	}
	return size, c.SetWriteBuffer(size)
}
