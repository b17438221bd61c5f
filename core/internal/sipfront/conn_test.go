package sipfront

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/devpki"
)

// pipeConn is a streamConn over an in-memory pipe, whose far end the test
// reads (or not); drops are recorded.
func pipeConn(t *testing.T, timeout time.Duration) (*streamConn, net.Conn, func() []string) {
	t.Helper()
	near, far := net.Pipe()
	t.Cleanup(func() { _ = far.Close() })
	var mu sync.Mutex
	var drops []string
	sc := newStreamConn(near, near, func() time.Duration { return timeout }, func(r string) {
		mu.Lock()
		defer mu.Unlock()
		drops = append(drops, r)
	})
	sc.start()
	t.Cleanup(sc.finish)
	return sc, far, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), drops...)
	}
}

func TestStreamConnDropsAPeerThatDoesNotRead(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration
		give     int // bytes enqueued, in 1 KiB answers
		wantDrop string
	}{
		// The writer blocks on the first batch; the rest fills the queue.
		{name: "queue full", timeout: time.Minute, give: 2*maxSendQueue + 4096, wantDrop: dropQueueFull},
		// Fits the queue, but the peer takes nothing within the deadline.
		{name: "write timeout", timeout: 50 * time.Millisecond, give: 4096, wantDrop: dropWriteTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, _, drops := pipeConn(t, tt.timeout)
			answer := bytes.Repeat([]byte("a"), 1024)
			start := time.Now()
			for range tt.give / len(answer) {
				sc.enqueue(answer)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("enqueueing took %v: it must never wait for the peer", d)
			}
			if !eventually(tt.timeout+2*time.Second, func() bool { return len(drops()) > 0 }) {
				t.Fatalf("not dropped within %v", tt.timeout+2*time.Second)
			}
			if got := drops(); len(got) != 1 || got[0] != tt.wantDrop {
				t.Errorf("drops = %q, want [%q]", got, tt.wantDrop)
			}
			select {
			case <-sc.done:
			case <-time.After(2 * time.Second):
				t.Fatal("writer still running after the drop")
			}
			if sc.enqueue(answer) {
				t.Error("enqueue after the drop succeeded")
			}
		})
	}
}

// timedOutConn is a connection the kernel gave up on (TCP_USER_TIMEOUT):
// every write fails with ETIMEDOUT.
type timedOutConn struct{ net.Conn }

func (timedOutConn) Write([]byte) (int, error) {
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ETIMEDOUT)}
}

// TestStreamConnWriterSeesTCPTimeout: when the writer is the first to see
// the kernel's ETIMEDOUT, the drop is counted as a TCP timeout (over TLS
// the reader then saw only a closed connection, and nothing was counted:
// TestPeerThatStopsReadingIsDropped/TLS failed so on a loaded machine).
func TestStreamConnWriterSeesTCPTimeout(t *testing.T) {
	near, far := net.Pipe()
	defer far.Close()
	var got atomic.Value
	sc := newStreamConn(timedOutConn{near}, near, func() time.Duration { return time.Minute }, func(r string) { got.Store(r) })
	sc.start()
	defer sc.finish()
	sc.enqueue([]byte("SIP/2.0 200 OK\r\n\r\n"))
	select {
	case <-sc.done:
	case <-time.After(2 * time.Second):
		t.Fatal("writer still running after ETIMEDOUT")
	}
	if r, _ := got.Load().(string); r != dropTCPTimeout {
		t.Errorf("drop reason %q, want %q", r, dropTCPTimeout)
	}
}

// TestStreamConnDelivers: answers from many goroutines arrive whole and
// the queue's batches keep each one's bytes together; finish flushes.
func TestStreamConnDelivers(t *testing.T) {
	sc, far, drops := pipeConn(t, time.Second)
	const writers, each = 8, 50
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(far)
		got <- b
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{'A' + byte(w), '\n'}
			for range each {
				sc.reply(msg)
			}
		}()
	}
	wg.Wait()
	sc.finish() // flushes, then closes: ReadAll returns
	b := <-got
	counts := map[byte]int{}
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) != 1 {
			t.Fatalf("torn answer %q", line)
		}
		counts[line[0]]++
	}
	for w := range writers {
		if counts['A'+byte(w)] != each {
			t.Errorf("writer %d: %d answers arrived, want %d", w, counts['A'+byte(w)], each)
		}
	}
	if len(drops()) != 0 {
		t.Errorf("drops = %q, want none", drops())
	}
	sc.reply([]byte("late\n")) // after close: a no-op, no panic, no block
}

// TestStreamConnCloseDoesNotWaitForTheTLSPeer: closing a TLS connection
// whose peer reads nothing returns at once, from the reader or a replier
// alike; tls.Conn.Close would first try to send close_notify for 5 s.
func TestStreamConnCloseDoesNotWaitForTheTLSPeer(t *testing.T) {
	files, err := devpki.Write(t.TempDir(), "edge.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	near, far := net.Pipe()
	defer far.Close()
	server := tls.Server(near, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	client := tls.Client(far, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	errs := make(chan error, 1)
	go func() { errs <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	// From here on the client reads nothing.
	sc := newStreamConn(server, near, func() time.Duration { return time.Minute }, nil)
	sc.start()
	start := time.Now()
	sc.close()
	sc.finish()
	if d := time.Since(start); d > time.Second {
		t.Errorf("close took %v with a peer that does not read, want at once", d)
	}
}

// Peers that stop reading cannot add up to more than the shared budget:
// the connection whose answer would pass it is dropped, and what a
// dropped or drained connection held is given back.
func TestStreamConnSharedBudget(t *testing.T) {
	var budget atomic.Int64
	const limit = 8 << 10
	newConn := func() (*streamConn, net.Conn) {
		near, far := net.Pipe() // nobody reads far: writes block
		t.Cleanup(func() { near.Close(); far.Close() })
		sc := newStreamConn(near, near, func() time.Duration { return time.Minute }, nil)
		sc.budget, sc.budgetMax = &budget, limit
		return sc, far
	}
	a, _ := newConn()
	b, _ := newConn()
	msg := make([]byte, 3<<10)
	for i := range 2 {
		if !a.enqueue(msg) {
			t.Fatalf("a: message %d (of 3 KiB) refused under an 8 KiB budget", i)
		}
	}
	if b.enqueue(msg) {
		t.Fatal("b: 3 KiB more accepted, passing the shared 8 KiB budget")
	}
	if got := budget.Load(); got != 6<<10 {
		t.Errorf("budget after b's refusal = %d, want 6 KiB (a's)", got)
	}
	a.close()
	if got := budget.Load(); got != 0 {
		t.Errorf("budget after a closed = %d, want 0", got)
	}
}

// A reader waiting for the writer (waitWriter) returns false at once when
// the connection is closed from elsewhere, a replier's drop or Close, not
// after the write timeout; and true once a peer reads the queue down.
func TestWaitWriterWakesOnCloseAndDrain(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  func(sc *streamConn, far net.Conn)
		want bool
	}{
		{name: "closed", end: func(sc *streamConn, _ net.Conn) { sc.close() }, want: false},
		{name: "drained", end: func(_ *streamConn, far net.Conn) { go func() { _, _ = io.Copy(io.Discard, far) }() }, want: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			near, far := net.Pipe() // nobody reads far until end: writes block
			defer far.Close()
			sc := newStreamConn(near, near, func() time.Duration { return time.Minute }, nil)
			sc.start()
			defer sc.finish()
			if !sc.enqueue(make([]byte, readPause+1)) {
				t.Fatal("enqueue refused")
			}
			got := make(chan bool, 1)
			go func() { got <- sc.waitWriter() }()
			select {
			case v := <-got:
				t.Fatalf("waitWriter = %v with %d bytes unwritten, want it to wait", v, readPause+1)
			case <-time.After(100 * time.Millisecond):
			}
			tt.end(sc, far)
			select {
			case v := <-got:
				if v != tt.want {
					t.Errorf("waitWriter = %v, want %v", v, tt.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("waitWriter still waiting 2 s later (the write timeout is a minute)")
			}
		})
	}
}
