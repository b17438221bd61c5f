package sipfront

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// raiseFDLimit raises the soft RLIMIT_NOFILE towards want, as far as the
// hard limit allows, for the rest of the test, and returns the soft limit.
func raiseFDLimit(t *testing.T, want uint64) uint64 {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= want || rl.Cur >= rl.Max {
		return rl.Cur
	}
	old := rl
	rl.Cur = min(want, rl.Max)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	return rl.Cur
}

// TestIdleFloodFromOneSource: 10,050 idle connections from one address,
// which once took every place of a listener, leave another source free to
// connect and be answered. All of 127.0.0.0/8 is loopback on Linux, so
// 127.0.0.2 and 127.0.0.3 are two sources.
func TestIdleFloodFromOneSource(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,050 connections; runs in make test, not in the -short PR gate")
	}
	flood := 10050
	const spare = 300 // descriptors for the listeners, the server's side and the test itself
	if got := raiseFDLimit(t, uint64(flood+spare)); got < uint64(flood+spare) {
		flood = int(got) - spare
		t.Logf("RLIMIT_NOFILE is %d: flood scaled to %d connections", got, flood)
	}
	s, port := startWith(t, &fakeRouter{}, nil) // default limits: 64 per source, global from the fd limit

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	start := time.Now()
	reset := 0
	for i := range flood {
		c, err := d.Dial("tcp", addr.String())
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			reset++ // refused so fast that the dial saw it
		case err != nil:
			t.Fatalf("flood connection %d: %v", i, err)
		default:
			conns = append(conns, c)
		}
	}
	t.Logf("%d connections from 127.0.0.2 in %v, %d reset while dialling", flood,
		time.Since(start).Round(time.Millisecond), reset)

	refused := func() float64 {
		return testutil.ToFloat64(s.metrics.SIPConnsRefused.WithLabelValues(refusedPerSource))
	}
	want := float64(flood - DefaultMaxConnsPerSource)
	if !eventually(10*time.Second, func() bool { return refused() >= want }) {
		t.Fatalf("refused per source = %v, want %v", refused(), want)
	}
	if open := s.conns.open(); open != DefaultMaxConnsPerSource {
		t.Errorf("open connections = %d, want the per-source limit %d", open, DefaultMaxConnsPerSource)
	}
	c := dialFrom(t, "127.0.0.3", "127.0.0.1", port)
	defer c.Close()
	if !answered(t, c, 2*time.Second) {
		t.Fatal("a second source got no answer during the flood")
	}
}
