package testutil

import (
	"fmt"
	"net"
	"testing"
)

// FreeUDPTCPPort returns a port on 127.0.0.1 that is free for UDP and for
// TCP (a SIP listener binds both), and whose neighbours port+k for each k
// in tcpAbove are free for TCP too (edged's TLS listener is the SIP
// port + 1). It is free when checked: a test binds it soon after.
func FreeUDPTCPPort(t testing.TB, tcpAbove ...int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if free(port, tcpAbove) {
			return port
		}
	}
	t.Fatal("no port free for UDP and TCP on 127.0.0.1")
	return 0
}

func free(port int, tcpAbove []int) bool {
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	defer u.Close()
	for _, k := range tcpAbove {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+k))
		if err != nil {
			return false
		}
		defer l.Close()
	}
	return true
}
