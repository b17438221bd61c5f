package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/firstboot"
	"github.com/umedge/umedge/appliance/internal/apptest"
	"github.com/umedge/umedge/appliance/logring"
	"github.com/umedge/umedge/appliance/supervise"
	"github.com/umedge/umedge/core/config"
)

// hungEdged listens where edged would, on loopback, and never answers:
// a daemon that hangs rather than crashes. The kernel still accepts its
// TCP connections.
func hungEdged(t *testing.T) (sipPort, adminPort int) {
	t.Helper()
	sip, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sipPort = sip.Addr().(*net.TCPAddr).Port
	apptest.ServeUDP(t, fmt.Sprintf("127.0.0.1:%d", sipPort), func([]byte) []byte { return nil })
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sip.Close(); _ = admin.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	for _, ln := range []net.Listener{sip, admin} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c) // held open, never read
				mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return sipPort, admin.Addr().(*net.TCPAddr).Port
}

// TestHungEdgedOnTrialNotBlessed: an edged that hangs (it listens, the
// kernel takes its connections, it answers nothing) is never READY and
// never blessed; on a slot on trial the init asks for the reboot into the
// other slot once the grace is over, and says why.
func TestHungEdgedOnTrialNotBlessed(t *testing.T) {
	sipPort, adminPort := hungEdged(t)
	t.Run("tcp and udp", func(t *testing.T) {
		hungNotBlessed(t, fmt.Sprintf(
			"[sip]\nfqdn = \"edge.example.net\"\nlisten = [\"127.0.0.1\"]\nmode = \"tcp\"\nudp = true\ntcp_port = %d\n[admin]\nlisten = \"127.0.0.1:%d\"\n",
			sipPort, adminPort))
	})
	// TLS only and no admin API: the probe cannot send an OPTIONS without
	// a client certificate; a TCP connect alone is what the kernel
	// answers for a hung daemon.
	t.Run("tls without admin", func(t *testing.T) {
		testCert, testKey := filepath.Join(t.TempDir(), "cert.pem"), filepath.Join(t.TempDir(), "key.pem")
		certPEM, keyPEM, err := firstboot.SelfSigned("edge.example.net", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(testCert, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(testKey, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		hungNotBlessed(t, fmt.Sprintf(
			"[sip]\nfqdn = \"edge.example.net\"\nlisten = [\"127.0.0.1\"]\nmode = \"tls\"\ntls_port = %d\n[sip.tls]\ncert = %q\nkey = %q\nclient_ca = %q\n[admin]\nlisten = \"\"\n",
			sipPort, testCert, testKey, testCert))
	})
}

// loopBox is a box for the health loop with the config toml, the ESP
// mounted, an efivars directory (empty: not on trial) and an edged
// supervisor that is never run (0 starts).
func loopBox(t *testing.T, toml string) (*box, *apptest.LockedBuffer) {
	t.Helper()
	cfg, err := config.Parse("loop.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	out := &apptest.LockedBuffer{}
	b := testBox(out)
	b.cfg = cfg
	b.esp = true
	b.rebootReq = make(chan string, 1)
	b.o.efivars = t.TempDir()
	b.edged = supervise.New(supervise.Config{Path: "/bin/true"}, supervise.Direct, b.log)
	return b, out
}

func hungNotBlessed(t *testing.T, toml string) {
	t.Helper()
	b, out := loopBox(t, toml)
	blesser := &fakeBlesser{}
	b.blesser = blesser
	if err := os.WriteFile(filepath.Join(b.o.efivars, bootCountVar), []byte{7, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { b.healthLoop(ctx, 2*time.Second); close(done) }()
	select {
	case why := <-b.rebootReq:
		if why != "unhealthy on trial" {
			t.Errorf("reboot asked for %q", why)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no reboot asked for a hung edged on trial; console:\n%s", out)
	}
	<-done
	console := out.String()
	if strings.Contains(console, "UMEDGE READY") || strings.Contains(console, "BLESSED") || len(blesser.dirs) != 0 {
		t.Fatalf("a hung edged was taken for healthy (blessed %v):\n%s", blesser.dirs, console)
	}
	if !strings.Contains(console, "UMEDGE UNHEALTHY for 2s on trial slot b") {
		t.Errorf("the console does not say why:\n%s", console)
	}
}

// TestLogErrorOnTheConsole: when the log file stops taking lines (the
// data partition is full) the console says so once.
func TestLogErrorOnTheConsole(t *testing.T) {
	data := apptest.SmallDisk(t, 16)
	out := &apptest.LockedBuffer{}
	b := testBox(out)
	b.ring = logring.New(1<<10, 1<<20)
	if err := b.ring.Persist(data, "log"); err != nil {
		t.Fatal(err)
	}
	b.reportLogErr()
	if out.String() != "" {
		t.Fatalf("a log error reported while the file takes lines: %q", out)
	}
	for range 100 {
		fmt.Fprintln(b.ring, strings.Repeat("x", 400)) // 40 KB into 16 KB
	}
	b.reportLogErr()
	b.reportLogErr()
	if got := strings.Count(out.String(), "UMEDGE LOG ERROR"); got != 1 || !strings.Contains(out.String(), "no space") {
		t.Fatalf("console after the disk filled: %q", out)
	}
}

// flakyBlesser fails its first fails calls (an ESP write error, a busy
// vfat), then blesses.
type flakyBlesser struct {
	mu    sync.Mutex
	fails int
	calls int
}

func (f *flakyBlesser) Bless(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return fmt.Errorf("write loader/entries: input/output error")
	}
	return nil
}

// TestBlessRetried: a bless that fails once (the ESP had an I/O error) is
// tried again while edged stays healthy. Blessed only on the first pass,
// the slot stayed on trial for the whole run: the next reboot, for any
// reason, fell back to the other slot, and every firmware upload was
// refused as "running slot not blessed yet".
func TestBlessRetried(t *testing.T) {
	sipAddr := apptest.ServeUDP(t, "127.0.0.1:0", func(req []byte) []byte {
		var callID string
		for _, l := range strings.Split(string(req), "\r\n") {
			if v, ok := strings.CutPrefix(l, "Call-ID: "); ok {
				callID = v
			}
		}
		return []byte("SIP/2.0 200 OK\r\nCall-ID: " + callID + "\r\nContent-Length: 0\r\n\r\n")
	})
	b, out := loopBox(t, fmt.Sprintf(
		"[sip]\nfqdn = \"edge.example.net\"\nlisten = [\"127.0.0.1\"]\nmode = \"tcp\"\nudp = true\ntcp_port = %d\n[admin]\nlisten = \"\"\n",
		sipAddr.(*net.UDPAddr).Port))
	blesser := &flakyBlesser{fails: 2}
	b.blesser = blesser
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.healthLoop(ctx, time.Minute)
	apptest.WaitFor(t, func() bool { return strings.Contains(out.String(), "UMEDGE BLESSED slot=b") }, "the bless after two failures")
	cancel()
	if n := strings.Count(out.String(), "UMEDGE BLESS ERROR"); n != 1 {
		t.Errorf("%d BLESS ERROR lines, want the first failure only:\n%s", n, out)
	}
}
