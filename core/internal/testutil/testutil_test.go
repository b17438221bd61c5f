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
