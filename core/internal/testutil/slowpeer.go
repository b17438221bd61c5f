package testutil

import (
	"net"
	"net/netip"
	"testing"
)

// NeverReads listens for TCP on 127.0.0.1 and accepts every connection
// with a small receive buffer, but never reads from it: a peer (a
// collector, a back end) that stops taking what it is sent. It returns
// the address; everything closes when the test ends.
func NeverReads(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
