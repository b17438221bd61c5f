package media

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// TestFastPathWithoutPermission: a process that may not load BPF programs
// (here: the test binary run again as nobody) relays every call in
// userspace under fast_path = "auto", says why once, counts it, and with
// "tc" refuses to start naming the setting.
func TestFastPathWithoutPermission(t *testing.T) {
	if os.Getenv("UMEDGE_TEST_NOBPF") == "1" {
		noBPFChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("dropping to an unprivileged user needs root")
	}
	// The test binary, where nobody can run it (go test's directory is
	// the building user's alone).
	dir, err := os.MkdirTemp("", "umedge-nobpf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "media.test")
	copyFile(t, os.Args[0], bin)
	for _, p := range []string{dir, bin} {
		if err := os.Chmod(p, 0o755); err != nil { //nolint:gosec // nobody must run it
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run", "^TestFastPathWithoutPermission$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "UMEDGE_TEST_NOBPF=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestFastPathWithoutPermission")) {
		t.Fatalf("the unprivileged run failed: %v", err)
	}
}

func noBPFChild(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatal("the child runs as root")
	}
	var logs strings.Builder
	base := 20000 + 2*rand.IntN(15000)
	auto, err := New(Config{PortMin: base, PortMax: base + 15, Workers: 1, LatchWindow: time.Second,
		FastPath: fastpath.Auto}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("auto without BPF permission: %v, want userspace", err)
	}
	defer auto.Close()
	st := auto.FastPath()
	if st.Active || st.Unavail != 1 || !strings.Contains(st.Why, "operation not permitted") {
		t.Errorf("auto: %+v, want inactive, counted once, saying the kernel refused permission", st)
	}
	if n := strings.Count(logs.String(), "media fast path off"); n != 1 {
		t.Errorf("auto logged %d lines saying the fast path is off, want 1:\n%s", n, logs.String())
	}
	// Nor may it load the idle pairs' socket filter: they are parked by
	// connect(2), said once (pairpool.go).
	if auto.Stats().IdleFilter {
		t.Error("the idle filter loaded without BPF permission")
	}
	if n := strings.Count(logs.String(), "idle pairs parked by connect(2)"); n != 1 {
		t.Errorf("%d lines saying idle pairs are parked by connect(2), want 1:\n%s", n, logs.String())
	}
	tc, err := New(Config{PortMin: base + 16, PortMax: base + 31, Workers: 1, LatchWindow: time.Second,
		FastPath: fastpath.TC}, nil)
	if err == nil {
		tc.Close()
		t.Fatal(`fast_path = "tc" started without BPF permission`)
	}
	if !errors.Is(err, fastpath.ErrUnavailable) || !strings.Contains(err.Error(), `fast_path = "tc"`) {
		t.Errorf("tc: %v, want ErrUnavailable naming fast_path", err)
	}
	// Calls still flow, in userspace.
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, auto, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for i := range 5 {
		pkt := rtpPacket(0, uint16(i), uint32(160*i), 0xA) //nolint:gosec // small
		if _, err := a.rtp.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		if got, _ := recv(t, b.rtp, 2*time.Second); !bytes.Equal(got, pkt) {
			t.Fatalf("packet %d did not arrive", i)
		}
		back := rtpPacket(0, uint16(i), uint32(160*i), 0xB) //nolint:gosec // small
		if _, err := b.rtp.WriteToUDPAddrPort(back, toB); err != nil {
			t.Fatal(err)
		}
		if got, _ := recv(t, a.rtp, 2*time.Second); !bytes.Equal(got, back) {
			t.Fatalf("packet %d back did not arrive", i)
		}
	}
	if p := s.Stats().Legs[SideA].Path; p != PathUserspace {
		t.Errorf("leg on %s, want userspace", p)
	}
	l := s.legs[SideA]
	port, fds := l.rtp.port, [2]int{l.rtp.fd, l.rtcp.fd}
	s.Close()
	wantParked(t, auto, plain.Local, port, fds, true)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
