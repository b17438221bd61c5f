//go:build linux

package pluginhost

import (
	"github.com/umedge/umedge/core/internal/testutil"

	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// testBinary is the test plugin built once for the whole test binary, and
// testSum its hex SHA-256.
var testBinary, testSum string

const testBinaryName = "umedge-plugin-test"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childHostEnv); dir != "" {
		os.Exit(runChildHost(dir))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pluginhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testBinary = filepath.Join(dir, testBinaryName)
	cmd := exec.Command("go", "build", "-o", testBinary, "./testdata/testplugin")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test plugin:", err)
		return 1
	}
	if testSum, err = fileSHA256(testBinary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

type testHost struct {
	*Host
	dir string
	log *testutil.LockedBuffer
}

// newTestHost returns a Host over a fresh plugin directory that holds the
// test plugin as umedge-plugin-test. The host is closed at cleanup, after
// which no goroutine may be left behind.
func newTestHost(t *testing.T, cfg Config) *testHost {
	t.Helper()
	checkGoroutines(t)
	dir := t.TempDir()
	copyFile(t, testBinary, filepath.Join(dir, testBinaryName), nil)
	cfg.Dir = dir
	lb := &testutil.LockedBuffer{}
	h := New(cfg, WithLogger(slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", lb.String())
		}
	})
	return &testHost{Host: h, dir: dir, log: lb}
}

// checkGoroutines fails the test if goroutines started during it are still
// running at cleanup (registered first, so it runs last).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d after, %d before\n%s", runtime.NumGoroutine(), before, buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// copyFile copies src to dst (mode 0755), appending extra.
func copyFile(t *testing.T, src, dst string, extra []byte) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, append(data, extra...), 0o755); err != nil {
		t.Fatal(err)
	}
}

func testSpec(name, settings string) Spec {
	return Spec{
		Name:     name,
		Kind:     base.KindRouter,
		Binary:   testBinaryName,
		SHA256:   testSum,
		Settings: []byte(settings),
	}
}

// route calls Route on the handle with a fixed call.
func route(r router.Router) (*router.Decision, error) {
	return r.Route(context.Background(), &router.Call{CallID: "c1", Transport: router.TCP, ToUser: "1234"})
}

// wantPool fails unless Route on plugin name answers with pool.
func wantPool(t *testing.T, h *Host, name, pool string) {
	t.Helper()
	d, err := route(h.Router(name))
	if err != nil {
		t.Fatalf("Route(%s) = %v, want pool %q", name, err, pool)
	}
	if d.Pool != pool {
		t.Fatalf("Route(%s).Pool = %q, want %q", name, d.Pool, pool)
	}
}

func statusOf(t *testing.T, h *Host, name string) Status {
	t.Helper()
	for _, st := range h.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status for plugin %s in %+v", name, h.Status())
	return Status{}
}

// waitFor polls cond every 5 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// children returns the PIDs of live (non-zombie) child processes of the test.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
