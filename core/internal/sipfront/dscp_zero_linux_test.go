package sipfront

import (
	"log/slog"
	"syscall"
	"testing"
)

// TestDSCPZeroNeedsNoMarking: sip.dscp = 0 (unmarked) opens the listeners
// even where the kernel refuses IP_TOS / IPV6_TCLASS (a sandbox): no
// socket is touched for a marking nobody asked for.
func TestDSCPZeroNeedsNoMarking(t *testing.T) {
	defer func(f func(fd, tos int) error) { markTOS = f }(markTOS)
	markTOS = func(int, int) error { return syscall.EPERM }
	s := New(&fakeRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Apply(dscpConfig("127.0.0.1", freePort(t), 0)); err != nil {
		t.Fatalf("sip.dscp 0: %v", err)
	}
}
