package media

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestIdlePairHalfFailedSession: a session whose second leg cannot bind
// (its address is not ours) after the first took an idle pair — served its
// quarantine, or early with nothing else free — leaks no descriptor and no
// port: the pool's counts come back exact, and after Engine.Close no
// socket of the engine is open.
func TestIdlePairHalfFailedSession(t *testing.T) {
	before := openFDs(t)
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = 20 * time.Millisecond })
	bad := LegProfile{Local: netip.MustParseAddr("192.0.2.1"), Security: SecurityRTP} // TEST-NET-1: not bound here
	for round := range 40 {
		s, err := e.NewSession("ok", plain, plain, nil)
		if err != nil {
			t.Fatalf("round %d: NewSession: %v", round, err)
		}
		s.Close()
		if round%2 == 0 {
			time.Sleep(25 * time.Millisecond) // out of quarantine; odd rounds take pairs early
		}
		if _, err := e.NewSession("half", plain, bad, nil); err == nil || errors.Is(err, ErrNoPorts) {
			t.Fatalf("round %d: NewSession with leg b on %s = %v, want its bind error", round, bad.Local, err)
		}
		if st := e.Stats(); st.PortsInUse != 0 || st.PortsFree != 4 || st.Sessions != 0 {
			t.Fatalf("round %d: %d ports in use, %d free, %d sessions; want 0, 4, 0", round, st.PortsInUse, st.PortsFree, st.Sessions)
		}
	}
	if st := e.Stats(); st.PairsReused == 0 {
		t.Fatal("no idle pair was reused: the test did not test")
	}
	if n := openFDs(t); n > before+2*2*2+2*3 { // the engine's: its idle pairs, each worker's epoll and eventfd (and slack)
		t.Errorf("%d descriptors open, %d before the engine: leaked", n, before)
	}
	e.Close()
	if n := openFDs(t); n > before {
		t.Errorf("after Engine.Close %d descriptors open, %d before: leaked", n, before)
	}
}

// TestIdlePairFloodIPv6Counted: datagrams sent to an idle pair on ::1 are
// dropped, as on 127.0.0.1, and UnallocatedDrops counts them: the
// filter's counter takes both families; parked by connect(2), the kernel
// counts IPv6's in Udp6NoPorts (snmp6), not in Udp NoPorts
// (TestIdlePairParkedIPv6 has both ways).
func TestIdlePairFloodIPv6Counted(t *testing.T) {
	e := newTestEngine(t, 4, func(c *Config) { c.IdleQuarantine = time.Hour })
	v6 := LegProfile{Local: netip.IPv6Loopback(), Security: SecurityRTP}
	s := newSession(t, e, v6, v6)
	port := s.legs[SideA].rtp.port
	s.Close()
	time.Sleep(20 * time.Millisecond) // anything the ended call left drained
	before := e.Stats().UnallocatedDrops
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}) // unconnected: an ICMP error fails no write
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 50
	for range n {
		if _, err := c.WriteToUDP(make([]byte, 172), &net.UDPAddr{IP: net.IPv6loopback, Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.Stats().UnallocatedDrops-before < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.Stats().UnallocatedDrops - before; got < n {
		t.Errorf("%d datagrams at an idle pair on ::1, UnallocatedDrops grew by %d", n, got)
	}
}

// TestIdlePairEarlyOldest: with nothing else free a leg takes a pair still
// in quarantine, and then the oldest one on its address, not the youngest
// because it idles on the leg's worker: the younger the pair, the likelier
// the old call's peer, which may not have our BYE yet, still sends to it
// and latches the new call.
func TestIdlePairEarlyOldest(t *testing.T) {
	e := newTestEngine(t, 4, func(c *Config) { c.IdleQuarantine = time.Hour })
	s1 := newSession(t, e, plain, plain) // on workers[0]
	s2 := newSession(t, e, plain, plain) // on workers[1]
	if s1.w == s2.w {
		t.Fatal("both sessions on one worker: the test needs two")
	}
	old := ports(s2)
	s2.Close() // the older pairs, idle on workers[1]
	time.Sleep(20 * time.Millisecond)
	s1.Close() // the younger, idle on workers[0], where the next session goes
	s3 := newSession(t, e, plain, plain)
	if s3.w != s1.w {
		t.Fatal("the third session is not on the first's worker: the test did not test")
	}
	if got := ports(s3); got != old && got != [2]int{old[1], old[0]} {
		t.Errorf("with every pair in quarantine the session got %v (the pairs freed last, on its worker), want the oldest %v", got, old)
	}
	if st := e.Stats(); st.PairsReusedEarly != 2 {
		t.Errorf("%d pairs reused early, want 2", st.PairsReusedEarly)
	}
}

// TestIdlePairsEngineCloseDuringUse: Engine.Close while goroutines open
// and close sessions (taking and leaving idle pairs, early too) leaves no
// descriptor of the engine open once they are done.
func TestIdlePairsEngineCloseDuringUse(t *testing.T) {
	before := openFDs(t)
	e := newTestEngine(t, 8, func(c *Config) { c.IdleQuarantine = 5 * time.Millisecond })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := e.NewSession("c", plain, plain, nil)
				if err != nil {
					if errors.Is(err, ErrClosed) {
						return
					}
					continue
				}
				s.Close()
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	e.Close()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if st := e.Stats(); st.PairsReused == 0 {
		t.Fatal("no idle pair was reused: the test did not test")
	}
	if n := openFDs(t); n > before {
		t.Errorf("after Engine.Close and its users done, %d descriptors open, %d before: leaked", n, before)
	}
}
