// Package apptest holds small helpers the appliance's tests share.
package apptest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// LockedBuffer is an io.Writer that the code under test and the test
// share: a console, a daemon's output.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WaitFor polls cond until it holds, failing the test after 5 seconds
// with what it was waiting for.
func WaitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ServeUDP listens on addr (in the caller's network namespace) and answers
// every datagram with reply(datagram), or not at all when reply returns
// nil, until the test ends. It returns the address it listens on.
func ServeUDP(t testing.TB, addr string, reply func([]byte) []byte) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	return pc.LocalAddr()
}
