//go:build linux

package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

func TestStartInfoRoute(t *testing.T) {
	h := newTestHost(t, Config{})
	if err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}

	info, err := h.Router("r").Info(context.Background())
	if err != nil {
		t.Fatalf("Info() = %v", err)
	}
	want := base.Info{Kind: base.KindRouter, Name: "test.router", Version: "0.0.1", APIVersion: base.APIVersion}
	if *info != want {
		t.Errorf("Info() = %+v, want %+v", *info, want)
	}
	d, err := route(h.Router("r"))
	if err != nil {
		t.Fatalf("Route() = %v", err)
	}
	if d.Pool != "a" || d.Called != "1234" {
		t.Errorf("Route() = %+v, want pool a, called 1234", d)
	}
	table, err := h.Router("r").Table(context.Background())
	if err != nil {
		t.Fatalf("Table() = %v", err)
	}
	if len(table.Pools) != 1 || table.Pools[0].Name != "a" {
		t.Errorf("Table().Pools = %+v, want [a]", table.Pools)
	}

	st := statusOf(t, h.Host, "r")
	if st.State != StateRunning || st.PID == 0 || st.PluginName != "test.router" ||
		st.Version != "0.0.1" || st.Kind != base.KindRouter || st.Restarts != 0 {
		t.Errorf("Status() = %+v", st)
	}
	if !slices.Contains(children(t), st.PID) {
		t.Errorf("pid %d is no child process of the test", st.PID)
	}
}

func TestStartRefused(t *testing.T) {
	otherSum := sha256.Sum256([]byte("not the plugin"))
	other := hex.EncodeToString(otherSum[:])

	tests := []struct {
		name     string
		give     func(s *Spec)
		giveEnv  map[string]string
		wantErr  error
		wantText []string // substrings of the error text
	}{
		{
			name:     "missing pin",
			give:     func(s *Spec) { s.SHA256 = "" },
			wantErr:  ErrNoPin,
			wantText: []string{testBinaryName},
		},
		{
			name:     "wrong sha256",
			give:     func(s *Spec) { s.SHA256 = other },
			wantErr:  ErrChecksumMismatch,
			wantText: []string{testBinaryName, "expected " + other, "actual " + testSum},
		},
		{
			name:    "malformed pin",
			give:    func(s *Spec) { s.SHA256 = "abc" },
			wantErr: errBadPin,
		},
		{
			name:     "kind mismatch",
			giveEnv:  map[string]string{"TESTPLUGIN_KIND": "worker"},
			wantErr:  ErrKindMismatch,
			wantText: []string{`"worker"`, `"router"`},
		},
		{
			name:     "api version mismatch",
			giveEnv:  map[string]string{"TESTPLUGIN_API_VERSION": "99"},
			wantErr:  ErrAPIVersion,
			wantText: []string{"99"},
		},
		{
			name:    "missing binary",
			give:    func(s *Spec) { s.Binary = "umedge-plugin-nope" },
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "binary outside the plugin directory",
			give:    func(s *Spec) { s.Binary = "../" + testBinaryName },
			wantErr: errBadBinary,
		},
		{
			name:    "kind without a shim",
			give:    func(s *Spec) { s.Kind = base.KindWorker },
			wantErr: errBadKind,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.giveEnv {
				t.Setenv(k, v)
			}
			h := newTestHost(t, Config{})
			s := testSpec("r", `pool = "a"`)
			if tt.give != nil {
				tt.give(&s)
			}

			err := h.Start(context.Background(), []Spec{s})

			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Start() = %v, want errors.Is %v", err, tt.wantErr)
			}
			for _, w := range append(tt.wantText, "plugin r") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start() = %q, want it to contain %q", err, w)
				}
			}
			if len(children(t)) != 0 {
				t.Errorf("child processes left: %v", children(t))
			}
			time.Sleep(100 * time.Millisecond) // a failed start must not be retried
			st := statusOf(t, h.Host, "r")
			if st.State != StateFailed || st.LastError != err.Error() || st.Restarts != 0 {
				t.Errorf("Status() = %+v, want failed with %q", st, err)
			}
			if _, err := route(h.Router("r")); !errors.Is(err, base.ErrUnavailable) {
				t.Errorf("Route() on failed plugin = %v, want base.ErrUnavailable", err)
			}
		})
	}
}

func TestSHA256Sums(t *testing.T) {
	otherSum := sha256.Sum256([]byte("not the plugin"))
	other := hex.EncodeToString(otherSum[:])

	tests := []struct {
		name     string
		giveSums string
		givePin  string // Spec.SHA256
		wantErr  error
	}{
		{name: "two-space entry", giveSums: testSum + "  " + testBinaryName + "\n"},
		{name: "binary-mode entry among others", giveSums: other + "  umedge-plugin-x\n" + testSum + " *" + testBinaryName + "\n"},
		{name: "wrong entry", giveSums: other + "  " + testBinaryName + "\n", wantErr: ErrChecksumMismatch},
		{name: "no entry", giveSums: testSum + "  umedge-plugin-x\n", wantErr: ErrNoPin},
		{name: "spec pin wins over the file", giveSums: other + "  " + testBinaryName + "\n", givePin: testSum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sums := filepath.Join(t.TempDir(), "SHA256SUMS")
			if err := os.WriteFile(sums, []byte(tt.giveSums), 0o644); err != nil {
				t.Fatal(err)
			}
			h := newTestHost(t, Config{SHA256Sums: sums})
			s := testSpec("r", `pool = "a"`)
			s.SHA256 = tt.givePin

			err := h.Start(context.Background(), []Spec{s})

			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Start() = %v, want errors.Is %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start() = %v", err)
			}
			wantPool(t, h.Host, "r", "a")
		})
	}
}

func TestStartConfigError(t *testing.T) {
	h := newTestHost(t, Config{})

	err := h.Start(context.Background(), []Spec{
		testSpec("good", `pool = "a"`),
		testSpec("r", "bad = true"),
	})

	var ce *base.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Start() = %v, want a *base.ConfigError", err)
	}
	if len(ce.Problems) != 1 || ce.Problems[0].Path != "bad" || ce.Problems[0].Message != "must not be true" {
		t.Errorf("Problems = %+v, want [bad: must not be true]", ce.Problems)
	}
	if !strings.Contains(err.Error(), "plugin r") {
		t.Errorf("Start() = %q, want it to name plugin r", err)
	}
	if st := statusOf(t, h.Host, "r"); st.State != StateFailed {
		t.Errorf("Status(r).State = %s, want failed", st.State)
	}
	// The other plugin of the set is unaffected.
	wantPool(t, h.Host, "good", "a")
}

func TestStartTwice(t *testing.T) {
	h := newTestHost(t, Config{})
	if err := h.Start(context.Background(), []Spec{testSpec("r", "")}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if err := h.Start(context.Background(), []Spec{testSpec("r", "")}); !errors.Is(err, errAlreadyUsed) {
		t.Errorf("second Start() = %v, want %v", err, errAlreadyUsed)
	}
	if err := h.Start(context.Background(), []Spec{testSpec("x", ""), testSpec("x", "")}); !errors.Is(err, errDuplicate) {
		t.Errorf("Start() with a duplicate = %v, want %v", err, errDuplicate)
	}
}

func TestRestartAfterKill(t *testing.T) {
	h := newTestHost(t, Config{})
	changed := make(chan string, 10)
	h.OnChange(func(name string) { changed <- name })
	started := time.Now()
	if err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	// A restart must take well under 1 s with the default 50 ms backoff
	// (startup costs ~140 ms). On a machine so loaded that one start takes
	// longer than 250 ms, allow four starts plus the backoff instead.
	limit := time.Second
	if took := time.Since(started); took > 250*time.Millisecond {
		limit = max(limit, 4*took+DefaultBackoffMin)
		t.Logf("start took %v (overloaded machine); restart limit %v", took, limit)
	}
	<-changed // the initial start
	// Settings given through the handle are the ones re-applied after a restart.
	if err := h.Router("r").Configure(context.Background(), []byte(`pool = "z"`)); err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	<-changed
	pid := statusOf(t, h.Host, "r").PID

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, limit, "running again with Restarts=1", func() bool {
		st := statusOf(t, h.Host, "r")
		return st.State == StateRunning && st.Restarts == 1 && st.PID != pid
	})
	t.Logf("running again after %v", time.Since(killed))

	wantPool(t, h.Host, "r", "z")
	select {
	case name := <-changed:
		if name != "r" {
			t.Errorf("OnChange(%q), want r", name)
		}
	case <-time.After(5 * time.Second):
		t.Error("OnChange not called after the restart")
	}
	if alive(pid) {
		t.Errorf("killed pid %d still alive", pid)
	}
	if st := statusOf(t, h.Host, "r"); !strings.Contains(st.LastError, "signal: killed") {
		t.Errorf("LastError = %q, want the exit reason", st.LastError)
	}
	logs := h.log.String()
	if !strings.Contains(logs, `level=ERROR msg="plugin process exited"`) || !strings.Contains(logs, "signal: killed") {
		t.Errorf("no ERROR log with the exit reason in:\n%s", logs)
	}
}

func TestDowntimeFailsFast(t *testing.T) {
	h := newTestHost(t, Config{BackoffMin: 5 * time.Second, BackoffMax: 5 * time.Second})
	if err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if err := syscall.Kill(statusOf(t, h.Host, "r").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "state backoff", func() bool { return statusOf(t, h.Host, "r").State == StateBackoff })

	start := time.Now()
	_, err := route(h.Router("r"))
	took := time.Since(start)

	if !errors.Is(err, base.ErrUnavailable) || !errors.Is(err, ErrNotRunning) {
		t.Errorf("Route() during downtime = %v, want ErrNotRunning and base.ErrUnavailable", err)
	}
	if took > 100*time.Millisecond {
		t.Errorf("Route() during downtime took %v, want it to fail fast", took)
	}
	if st := statusOf(t, h.Host, "r"); st.PID != 0 || st.Restarts != 1 {
		t.Errorf("Status() in backoff = %+v, want PID 0, Restarts 1", st)
	}
}

func TestInFlightCrash(t *testing.T) {
	h := newTestHost(t, Config{})
	if err := h.Start(context.Background(), []Spec{testSpec("r", "crash_on_route = true")}); err != nil {
		t.Fatalf("Start() = %v", err)
	}

	_, err := route(h.Router("r"))

	if !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("Route() that crashes the plugin = %v, want base.ErrUnavailable", err)
	}
	waitFor(t, 5*time.Second, "restarted", func() bool {
		st := statusOf(t, h.Host, "r")
		return st.State == StateRunning && st.Restarts == 1
	})
	if st := statusOf(t, h.Host, "r"); !strings.Contains(st.LastError, "exit status 3") {
		t.Errorf("LastError = %q, want exit status 3", st.LastError)
	}
}

func TestReconfigure(t *testing.T) {
	h := newTestHost(t, Config{})
	var mu sync.Mutex
	var changed []string
	h.OnChange(func(name string) {
		mu.Lock()
		changed = append(changed, name)
		mu.Unlock()
	})
	takeChanged := func() []string {
		mu.Lock()
		defer mu.Unlock()
		c := changed
		changed = nil
		slices.Sort(c)
		return c
	}
	ctx := context.Background()
	if err := h.Start(ctx, []Spec{testSpec("r1", `pool = "a"`), testSpec("r2", `pool = "b"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	takeChanged()
	pid1 := statusOf(t, h.Host, "r1").PID

	t.Run("refused settings roll back", func(t *testing.T) {
		err := h.Reconfigure(ctx, []Spec{
			testSpec("r1", `pool = "c"`), // changed, then rolled back
			testSpec("r5", `pool = "e"`), // added, then stopped
			testSpec("r2", "bad = true"), // refused
		})

		var re *ReconfigureError
		if !errors.As(err, &re) || re.Plugin != "r2" {
			t.Fatalf("Reconfigure() = %v, want a *ReconfigureError for r2", err)
		}
		var ce *base.ConfigError
		if !errors.As(err, &ce) || ce.Problems[0].Path != "bad" {
			t.Fatalf("Reconfigure() = %v, want a *base.ConfigError about bad", err)
		}
		wantPool(t, h.Host, "r1", "a")
		wantPool(t, h.Host, "r2", "b")
		if got := len(h.Status()); got != 2 {
			t.Errorf("len(Status()) = %d, want 2 (r5 rolled back)", got)
		}
		if got := len(children(t)); got != 2 {
			t.Errorf("%d child processes, want 2", got)
		}
		if c := takeChanged(); len(c) != 0 {
			t.Errorf("OnChange after a failed Reconfigure: %v", c)
		}
	})

	t.Run("settings, add and remove", func(t *testing.T) {
		err := h.Reconfigure(ctx, []Spec{testSpec("r1", `pool = "c"`), testSpec("r3", `pool = "d"`)})
		if err != nil {
			t.Fatalf("Reconfigure() = %v", err)
		}
		wantPool(t, h.Host, "r1", "c")
		wantPool(t, h.Host, "r3", "d")
		if _, err := route(h.Router("r2")); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Route(r2) after removal = %v, want ErrNotRunning", err)
		}
		if got := statusOf(t, h.Host, "r1").PID; got != pid1 {
			t.Errorf("r1 pid = %d, want %d (new settings need no restart)", got, pid1)
		}
		if c, want := takeChanged(), []string{"r1", "r2", "r3"}; !slices.Equal(c, want) {
			t.Errorf("OnChange names = %v, want %v", c, want)
		}
		if got := len(children(t)); got != 2 {
			t.Errorf("%d child processes, want 2", got)
		}
	})

	t.Run("failed restart keeps the old process", func(t *testing.T) {
		s := testSpec("r1", `pool = "c"`)
		s.SHA256 = strings.Repeat("0", 64)
		err := h.Reconfigure(ctx, []Spec{s, testSpec("r3", `pool = "d"`)})
		var re *ReconfigureError
		if !errors.As(err, &re) || re.Plugin != "r1" || !errors.Is(err, ErrChecksumMismatch) {
			t.Fatalf("Reconfigure() = %v, want a *ReconfigureError for r1 with ErrChecksumMismatch", err)
		}
		if got := statusOf(t, h.Host, "r1").PID; got != pid1 {
			t.Errorf("r1 pid = %d, want %d", got, pid1)
		}
		wantPool(t, h.Host, "r1", "c")
	})

	t.Run("new binary restarts", func(t *testing.T) {
		copyFile(t, testBinary, filepath.Join(h.dir, "umedge-plugin-test2"), []byte("v2"))
		sum2, err := fileSHA256(filepath.Join(h.dir, "umedge-plugin-test2"))
		if err != nil {
			t.Fatal(err)
		}
		pid3 := statusOf(t, h.Host, "r3").PID
		s := testSpec("r1", `pool = "f"`)
		s.Binary, s.SHA256 = "umedge-plugin-test2", sum2

		if err := h.Reconfigure(ctx, []Spec{s, testSpec("r3", `pool = "d"`)}); err != nil {
			t.Fatalf("Reconfigure() = %v", err)
		}

		wantPool(t, h.Host, "r1", "f")
		if got := statusOf(t, h.Host, "r1").PID; got == pid1 || alive(pid1) {
			t.Errorf("r1 pid = %d, old pid %d alive=%v; want a new process", got, pid1, alive(pid1))
		}
		if got := statusOf(t, h.Host, "r3").PID; got != pid3 {
			t.Errorf("unchanged r3 pid = %d, want %d", got, pid3)
		}
		if c, want := takeChanged(), []string{"r1"}; !slices.Equal(c, want) {
			t.Errorf("OnChange names = %v, want %v", c, want)
		}
	})
}

func TestReconfigureRestartsFailedPlugin(t *testing.T) {
	h := newTestHost(t, Config{})
	ctx := context.Background()
	if err := h.Start(ctx, []Spec{testSpec("r", "bad = true")}); err == nil {
		t.Fatal("Start() with bad settings = nil")
	}
	if err := h.Reconfigure(ctx, []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Reconfigure() = %v", err)
	}
	wantPool(t, h.Host, "r", "a")
	if st := statusOf(t, h.Host, "r"); st.State != StateRunning {
		t.Errorf("State = %s, want running", st.State)
	}
}

func TestCheck(t *testing.T) {
	h := newTestHost(t, Config{})
	ctx := context.Background()
	if err := h.Check(ctx, []Spec{testSpec("good", `pool = "a"`)}); err != nil {
		t.Errorf("Check(good) = %v", err)
	}

	wrong := testSpec("wrongsum", "")
	wrong.SHA256 = strings.Repeat("1", 64)
	err := h.Check(ctx, []Spec{testSpec("good", ""), testSpec("badcfg", "bad = true"), wrong})

	var ce *base.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("Check() = %v, want a *base.ConfigError", err)
	}
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("Check() = %v, want ErrChecksumMismatch", err)
	}
	for _, name := range []string{"plugin badcfg", "plugin wrongsum"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Check() = %q, want it to name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "plugin good") {
		t.Errorf("Check() = %q, names the good plugin", err)
	}
	if c := children(t); len(c) != 0 {
		t.Errorf("child processes left after Check: %v", c)
	}
	if len(h.Status()) != 0 {
		t.Errorf("Check registered plugins: %+v", h.Status())
	}
}

func TestClose(t *testing.T) {
	h := newTestHost(t, Config{})
	ctx := context.Background()
	if err := h.Start(ctx, []Spec{testSpec("r1", ""), testSpec("r2", "")}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	pids := []int{statusOf(t, h.Host, "r1").PID, statusOf(t, h.Host, "r2").PID}

	if err := h.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
	}
	if c := children(t); len(c) != 0 {
		t.Errorf("child processes left after Close: %v", c)
	}
	for _, st := range h.Status() {
		if st.State != StateStopped || st.PID != 0 {
			t.Errorf("Status() after Close = %+v, want stopped", st)
		}
	}
	if _, err := route(h.Router("r1")); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Route() after Close = %v, want base.ErrUnavailable", err)
	}
	if err := h.Start(ctx, []Spec{testSpec("r3", "")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Start() after Close = %v, want ErrClosed", err)
	}
	if err := h.Reconfigure(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconfigure() after Close = %v, want ErrClosed", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

func TestCloseDuringBackoff(t *testing.T) {
	h := newTestHost(t, Config{BackoffMin: time.Minute})
	if err := h.Start(context.Background(), []Spec{testSpec("r", "")}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if err := syscall.Kill(statusOf(t, h.Host, "r").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "state backoff", func() bool { return statusOf(t, h.Host, "r").State == StateBackoff })
	start := time.Now()
	if err := h.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close() in backoff took %v", took)
	}
}

func TestCallTimeout(t *testing.T) {
	h := newTestHost(t, Config{CallTimeout: time.Nanosecond})
	err := h.Start(context.Background(), []Spec{testSpec("r", "")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start() with a 1ns call timeout = %v, want context.DeadlineExceeded", err)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"umedge-plugin-b", "umedge-plugin-a", "README.md", "plugin-c"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "umedge-plugin-dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := New(Config{Dir: dir}).Discover()

	if err != nil {
		t.Fatalf("Discover() = %v", err)
	}
	if want := []string{"umedge-plugin-a", "umedge-plugin-b"}; !slices.Equal(got, want) {
		t.Errorf("Discover() = %v, want %v", got, want)
	}
	if _, err := New(Config{Dir: filepath.Join(dir, "nope")}).Discover(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Discover() of a missing dir = %v, want fs.ErrNotExist", err)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	h := newTestHost(t, Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond})
	if err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Setenv("TESTPLUGIN_EXIT_AT_START", "1") // inherited by every restart
	if err := syscall.Kill(statusOf(t, h.Host, "r").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 10*time.Second, "three failed restarts", func() bool {
		return strings.Count(h.log.String(), `msg="plugin restart failed"`) >= 3
	})
	logs := h.log.String()
	for _, want := range []string{"restart_in=20ms", "restart_in=40ms", "restart_in=80ms"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "restart_in=160ms") {
		t.Error("backoff exceeded BackoffMax")
	}
	st := statusOf(t, h.Host, "r")
	if st.Restarts != 1 || st.State == StateRunning || st.State == StateFailed ||
		!strings.Contains(st.LastError, "plugin exited before the handshake (exit status 4)") {
		t.Errorf("Status() in a crash loop = %+v, want 1 restart, backing off, the start error", st)
	}

	os.Unsetenv("TESTPLUGIN_EXIT_AT_START")
	waitFor(t, 5*time.Second, "running again", func() bool { return statusOf(t, h.Host, "r").State == StateRunning })
	wantPool(t, h.Host, "r", "a")
}

// TestRestartRetriesPin breaks what a restart checks, on disk, then fixes
// it: the restart must fail with the pin error, keep retrying with
// backoff (reading the binary and the pin again on every attempt) and get
// the plugin back without a reload.
func TestRestartRetriesPin(t *testing.T) {
	otherSum := sha256.Sum256([]byte("not the plugin"))
	other := hex.EncodeToString(otherSum[:])

	tests := []struct {
		name    string
		sums    bool // pin by a sums file outside the plugin dir, not inline
		breakIt func(t *testing.T, h *testHost, sums string)
		fixIt   func(t *testing.T, h *testHost, sums string)
		want    []string // in every restart error
	}{
		{
			// An attacker or a botched update swaps the binary.
			name: "tampered binary, inline pin",
			breakIt: func(t *testing.T, h *testHost, _ string) {
				t.Helper()
				replaceFile(t, filepath.Join(h.dir, testBinaryName), testBinary, []byte("tampered"))
			},
			fixIt: func(t *testing.T, h *testHost, _ string) {
				t.Helper()
				replaceFile(t, filepath.Join(h.dir, testBinaryName), testBinary, nil)
			},
			want: []string{ErrChecksumMismatch.Error(), "expected " + testSum},
		},
		{
			name: "wrong entry in the sums file",
			sums: true,
			breakIt: func(t *testing.T, _ *testHost, sums string) {
				t.Helper()
				writeFile(t, sums, other+"  "+testBinaryName+"\n")
			},
			fixIt: func(t *testing.T, _ *testHost, sums string) {
				t.Helper()
				writeFile(t, sums, testSum+"  "+testBinaryName+"\n")
			},
			want: []string{ErrChecksumMismatch.Error(), "expected " + other},
		},
		{
			name: "entry gone from the sums file",
			sums: true,
			breakIt: func(t *testing.T, _ *testHost, sums string) {
				t.Helper()
				writeFile(t, sums, other+"  umedge-plugin-x\n")
			},
			fixIt: func(t *testing.T, _ *testHost, sums string) {
				t.Helper()
				writeFile(t, sums, other+"  umedge-plugin-x\n"+testSum+" *"+testBinaryName+"\n")
			},
			want: []string{ErrNoPin.Error(), "no entry"},
		},
		{
			name: "binary removed",
			breakIt: func(t *testing.T, h *testHost, _ string) {
				t.Helper()
				if err := os.Remove(filepath.Join(h.dir, testBinaryName)); err != nil {
					t.Fatal(err)
				}
			},
			fixIt: func(t *testing.T, h *testHost, _ string) {
				t.Helper()
				replaceFile(t, filepath.Join(h.dir, testBinaryName), testBinary, nil)
			},
			want: []string{"plugin binary", "no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
			sums := filepath.Join(t.TempDir(), "plugins.sha256")
			s := testSpec("r", `pool = "a"`)
			if tt.sums {
				writeFile(t, sums, testSum+"  "+testBinaryName+"\n")
				cfg.SHA256Sums = sums
				s.SHA256 = ""
			}
			h := newTestHost(t, cfg)
			if err := h.Start(context.Background(), []Spec{s}); err != nil {
				t.Fatalf("Start() = %v", err)
			}
			pid := statusOf(t, h.Host, "r").PID
			tt.breakIt(t, h, sums)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}

			const failed = `msg="plugin restart failed"`
			waitFor(t, 10*time.Second, "three failed restarts", func() bool {
				return strings.Count(h.log.String(), failed) >= 3
			})
			for line := range strings.Lines(h.log.String()) {
				for _, w := range tt.want {
					if strings.Contains(line, failed) && !strings.Contains(line, w) {
						t.Errorf("restart failed with %s want %q in it", line, w)
					}
				}
			}
			st := statusOf(t, h.Host, "r")
			if st.State == StateFailed || st.State == StateRunning || st.PID != 0 {
				t.Errorf("Status() with a broken pin = %+v, want backing off", st)
			}
			if st.State == StateBackoff && !strings.Contains(st.LastError, tt.want[0]) {
				t.Errorf("LastError = %q, want the pin error %q", st.LastError, tt.want[0])
			}
			if c := children(t); len(c) != 0 {
				t.Errorf("child processes with a broken pin: %v", c)
			}

			tt.fixIt(t, h, sums)
			waitFor(t, 10*time.Second, "running again", func() bool {
				st := statusOf(t, h.Host, "r")
				return st.State == StateRunning && st.PID != pid
			})
			wantPool(t, h.Host, "r", "a")
		})
	}
}

// replaceFile atomically replaces dst with a copy of src plus extra.
func replaceFile(t *testing.T, dst, src string, extra []byte) {
	t.Helper()
	tmp := dst + ".new"
	copyFile(t, src, tmp, extra)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
