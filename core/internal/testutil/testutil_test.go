package testutil

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLockedBufferConcurrentWriters(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "w%d\n", i)
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Errorf("lines = %d, want 800", got)
	}
}

func TestNeverReads(t *testing.T) {
	addr := NeverReads(t)
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Writes stop being taken once the buffers on both ends are full.
	_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 64<<10)
	total := 0
	for total < 64<<20 {
		n, err := c.Write(buf)
		total += n
		if err != nil {
			break
		}
	}
	if total >= 64<<20 {
		t.Errorf("%d bytes taken by a peer that never reads", total)
	}
}

// The port is free for UDP and TCP, and so is port+1 for TCP when asked;
// each is bindable right after (nothing of the check is left bound).
func TestFreeUDPTCPPort(t *testing.T) {
	for range 20 {
		p := FreeUDPTCPPort(t, 1)
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("UDP %d: %v", p, err)
		}
		u.Close()
		for _, q := range []int{p, p + 1} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				t.Fatalf("TCP %d: %v", q, err)
			}
			l.Close()
		}
	}
}
