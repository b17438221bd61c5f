//go:build linux

package pluginhost

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// TestHungPluginIsKilledAndRestarted stops the plugin process (SIGSTOP):
// it still holds its sockets but answers nothing. The host must notice by
// its health probes within a bound, kill it and restart it.
func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	const interval, timeout = 50 * time.Millisecond, 100 * time.Millisecond
	h := newTestHost(t, Config{HealthInterval: interval, HealthTimeout: timeout})
	if err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	waitFor(t, 2*time.Second, "live after start", func() bool { return h.Live("r") })
	pid := statusOf(t, h.Host, "r").PID

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	stopped := time.Now()

	// Not live from the first failed probe on, while still "running".
	waitFor(t, 2*time.Second, "not live while stopped", func() bool { return !h.Live("r") })
	if st := statusOf(t, h.Host, "r"); st.HungKills == 0 && (st.State != StateRunning || st.HealthFailures == 0) {
		t.Errorf("Status() after a failed probe = %+v, want running with HealthFailures > 0", st)
	}
	// HungAfter probes of at most interval+timeout each, plus slack for a
	// loaded machine.
	bound := HungAfter*(interval+timeout) + 2*time.Second
	waitFor(t, bound, "killed as hung", func() bool { return statusOf(t, h.Host, "r").HungKills == 1 })
	t.Logf("killed as hung %v after SIGSTOP", time.Since(stopped))
	waitFor(t, 5*time.Second, "running again with a new pid", func() bool {
		st := statusOf(t, h.Host, "r")
		return st.State == StateRunning && st.PID != pid
	})
	waitFor(t, 2*time.Second, "live again", func() bool { return h.Live("r") })

	st := statusOf(t, h.Host, "r")
	if st.Restarts != 1 || st.HungKills != 1 {
		t.Errorf("Status() = %+v, want 1 restart and 1 hung kill", st)
	}
	if want := "hung: 3 health probes failed in a row"; !strings.Contains(st.LastError, want) ||
		!strings.Contains(st.LastError, "signal: killed") {
		t.Errorf("LastError = %q, want %q and the exit reason", st.LastError, want)
	}
	if alive(pid) {
		t.Errorf("hung pid %d still alive", pid)
	}
	wantPool(t, h.Host, "r", "a")
	if logs := h.log.String(); !strings.Contains(logs, `level=ERROR msg="plugin hung, killing it" plugin=r pid=`) {
		t.Errorf("no ERROR log of the hung kill in:\n%s", logs)
	}
}

// TestHangState checks the state the host shows while it kills a hung
// process, which lasts only until the supervisor sees the exit.
func TestHangState(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := New(Config{}, WithLogger(slog.New(slog.DiscardHandler)))
	in := newInstance(h, testSpec("r", ""))
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, host: newHostServices(h.log, "r")}
	in.mu.Lock()
	in.proc, in.state = p, StateRunning
	in.mu.Unlock()
	for range HungAfter {
		p.recordProbe(context.DeadlineExceeded)
	}

	in.hang(p, HungAfter, context.DeadlineExceeded)

	st := in.status()
	if st.State != StateHung || st.HungKills != 1 || st.Live || st.HealthFailures != HungAfter ||
		!strings.Contains(st.LastError, "hung: 3 health probes failed in a row (last: context deadline exceeded), killed") {
		t.Errorf("status() while killing = %+v", st)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("hung process ended with %v, want SIGKILL", err)
	}
}

func TestLiveness(t *testing.T) {
	h := newTestHost(t, Config{})
	err := h.Start(context.Background(), []Spec{testSpec("r", `pool = "a"`), testSpec("bad", "bad = true")})
	if err == nil {
		t.Fatal("Start() with bad settings = nil")
	}
	tests := []struct {
		name string
		want bool
	}{
		{name: "r", want: true},
		{name: "bad", want: false}, // failed
		{name: "nope", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.Live(tt.name); got != tt.want {
				t.Errorf("Live(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if h.Live("r") {
		t.Error("Live(r) after Close = true")
	}
}

// TestStopDrains stops a plugin while a Route is in flight: the host
// must drain it (the plugin refuses new work and finishes the call) before
// ending the process.
func TestStopDrains(t *testing.T) {
	tests := []struct {
		name string
		stop func(h *Host) error
	}{
		{name: "close", stop: func(h *Host) error { return h.Close() }},
		{name: "reconfigure removes it", stop: func(h *Host) error { return h.Reconfigure(context.Background(), nil) }},
		{name: "reconfigure replaces it", stop: func(h *Host) error {
			s := testSpec("r", `pool = "b"`)
			s.SHA256 = strings.ToUpper(s.SHA256) // another pin string: a new process
			return h.Reconfigure(context.Background(), []Spec{s})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHost(t, Config{})
			if err := h.Start(context.Background(), []Spec{testSpec("r", "pool = \"a\"\nroute_delay = \"500ms\"\nlog_routes = true")}); err != nil {
				t.Fatalf("Start() = %v", err)
			}
			pid := statusOf(t, h.Host, "r").PID
			type result struct {
				pool string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				d, err := route(h.Router("r"))
				if err != nil {
					done <- result{err: err}
					return
				}
				done <- result{pool: d.Pool}
			}()
			waitFor(t, 5*time.Second, "the route in flight", func() bool {
				return strings.Contains(h.log.String(), `msg="route started" plugin=r call_id=c1`)
			})

			if err := tt.stop(h.Host); err != nil {
				t.Fatalf("stop: %v", err)
			}

			select {
			case r := <-done:
				if r.err != nil || r.pool != "a" {
					t.Errorf("Route in flight during the stop = %q, %v; want pool a", r.pool, r.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Route in flight did not return")
			}
			if alive(pid) {
				t.Errorf("pid %d alive after the stop", pid)
			}
			if logs := h.log.String(); !strings.Contains(logs, `msg="plugin drained and stopped" plugin=r`) {
				t.Errorf("no drain logged in:\n%s", logs)
			}
		})
	}
}

// TestDrainTimeout stops a plugin whose call in flight outlasts
// DrainTimeout: the host waits that long, then ends it.
func TestDrainTimeout(t *testing.T) {
	const drain = 200 * time.Millisecond
	h := newTestHost(t, Config{DrainTimeout: drain})
	if err := h.Start(context.Background(), []Spec{testSpec("r", "route_delay = \"1m\"\nlog_routes = true")}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := route(h.Router("r"))
		done <- err
	}()
	waitFor(t, 5*time.Second, "the route in flight", func() bool {
		return strings.Contains(h.log.String(), `msg="route started"`)
	})

	start := time.Now()
	if err := h.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	took := time.Since(start)

	if took < drain || took > drain+3*time.Second {
		t.Errorf("Close() took %v, want the %v drain timeout and a little", took, drain)
	}
	if err := <-done; !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Route cut off by the stop = %v, want base.ErrUnavailable", err)
	}
	if logs := h.log.String(); !strings.Contains(logs, `msg="plugin not idle after drain, killed" plugin=r`) ||
		!strings.Contains(logs, "in_flight=1") {
		t.Errorf("no unfinished drain logged in:\n%s", logs)
	}
}

func TestInstances(t *testing.T) {
	h := newTestHost(t, Config{})
	ctx := context.Background()
	w := testSpec("w", `pool = "a"`)
	w.Instances = []string{"a", "b"}
	if err := h.Start(ctx, []Spec{w, testSpec("r", `pool = "r"`)}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	var names []string
	for _, st := range h.Status() {
		names = append(names, st.Name)
	}
	if want := []string{"r", "w/a", "w/b"}; !slices.Equal(names, want) {
		t.Fatalf("Status() names = %v, want %v", names, want)
	}
	a, b := statusOf(t, h.Host, "w/a"), statusOf(t, h.Host, "w/b")
	if a.Spec != "w" || a.Instance != "a" || b.Instance != "b" || a.State != StateRunning || b.State != StateRunning ||
		a.PID == b.PID || a.PID == 0 {
		t.Fatalf("Status() = %+v and %+v, want two running processes of spec w", a, b)
	}
	if r := statusOf(t, h.Host, "r"); r.Spec != "r" || r.Instance != "" {
		t.Errorf("Status(r) = %+v, want Spec r and no instance", r)
	}
	wantPool(t, h.Host, "w/a", "a")
	wantPool(t, h.Host, "w/b", "a")

	t.Run("each instance has its own state", func(t *testing.T) {
		if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "w/a restarted", func() bool {
			st := statusOf(t, h.Host, "w/a")
			return st.State == StateRunning && st.Restarts == 1
		})
		if st := statusOf(t, h.Host, "w/b"); st.PID != b.PID || st.Restarts != 0 {
			t.Errorf("Status(w/b) = %+v, want it untouched", st)
		}
	})

	t.Run("reconfigure the instance list", func(t *testing.T) {
		w.Instances = []string{"b", "c"}
		if err := h.Reconfigure(ctx, []Spec{w, testSpec("r", `pool = "r"`)}); err != nil {
			t.Fatalf("Reconfigure() = %v", err)
		}
		var names []string
		for _, st := range h.Status() {
			names = append(names, st.Name)
		}
		if want := []string{"r", "w/b", "w/c"}; !slices.Equal(names, want) {
			t.Fatalf("Status() names = %v, want %v", names, want)
		}
		if st := statusOf(t, h.Host, "w/b"); st.PID != b.PID {
			t.Errorf("w/b pid = %d, want %d (unchanged)", st.PID, b.PID)
		}
		wantPool(t, h.Host, "w/c", "a")
		if got := len(children(t)); got != 3 {
			t.Errorf("%d child processes, want 3", got)
		}
	})
}

func TestInstanceNamesRefused(t *testing.T) {
	with := func(name string, inst ...string) Spec {
		s := testSpec(name, "")
		s.Instances = inst
		return s
	}
	tests := []struct {
		name    string
		give    []Spec
		wantErr error
	}{
		{name: "empty instance", give: []Spec{with("w", "a", "")}, wantErr: errBadName},
		{name: "instance with a slash", give: []Spec{with("w", "a/b")}, wantErr: errBadName},
		{name: "spec name with a slash", give: []Spec{with("w/a")}, wantErr: errBadName},
		{name: "instance twice", give: []Spec{with("w", "a", "a")}, wantErr: errDuplicate},
		{name: "spec twice", give: []Spec{with("w", "a"), with("w", "b")}, wantErr: errDuplicate},
		{name: "no name", give: []Spec{with("")}, wantErr: errNoName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(Config{Dir: t.TempDir()})
			for _, call := range []struct {
				op string
				fn func(context.Context, []Spec) error
			}{{"Start", h.Start}, {"Reconfigure", h.Reconfigure}, {"Check", h.Check}} {
				if err := call.fn(context.Background(), tt.give); !errors.Is(err, tt.wantErr) {
					t.Errorf("%s() = %v, want errors.Is %v", call.op, err, tt.wantErr)
				}
			}
			if len(h.Status()) != 0 {
				t.Errorf("Status() = %+v, want nothing started", h.Status())
			}
		})
	}
}

// TestHostServices has the real plugin log through the host services and
// report degraded; both are attributed to its instance.
func TestHostServices(t *testing.T) {
	h := newTestHost(t, Config{})
	w := testSpec("w", "pool = \"a\"\nlog = \"store ready\"\ndegraded = \"mail store unreachable\"")
	w.Instances = []string{"a"}
	if err := h.Start(context.Background(), []Spec{w}); err != nil {
		t.Fatalf("Start() = %v", err)
	}

	logs := h.log.String()
	if want := `level=WARN msg="store ready" plugin=w/a pool=a plugin_attr=spoofed`; !strings.Contains(logs, want) {
		t.Errorf("log lacks %s:\n%s", want, logs)
	}
	if want := `level=WARN msg="plugin reports degraded" plugin=w/a reason="mail store unreachable"`; !strings.Contains(logs, want) {
		t.Errorf("log lacks %s:\n%s", want, logs)
	}
	st := statusOf(t, h.Host, "w/a")
	if !st.Degraded || st.DegradedReason != "mail store unreachable" || !st.Live {
		t.Errorf("Status() = %+v, want live but degraded: mail store unreachable", st)
	}

	// The report holds until the process ends; a new process starts clean.
	if err := h.Router("w/a").Configure(context.Background(), []byte(`pool = "b"`)); err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	if st := statusOf(t, h.Host, "w/a"); !st.Degraded {
		t.Errorf("Status() after Configure = %+v, want still degraded", st)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "restarted", func() bool {
		now := statusOf(t, h.Host, "w/a")
		return now.State == StateRunning && now.PID != st.PID && now.Restarts == 1
	})
	if st := statusOf(t, h.Host, "w/a"); st.Degraded || st.DegradedReason != "" {
		t.Errorf("Status() of the new process = %+v, want not degraded", st)
	}
	wantPool(t, h.Host, "w/a", "b")
}

func TestEdgedLagging(t *testing.T) {
	for _, tt := range []struct {
		lag, timeout time.Duration
		want         bool
	}{
		{0, 500 * time.Millisecond, false},
		{200 * time.Millisecond, 500 * time.Millisecond, false},
		{300 * time.Millisecond, 500 * time.Millisecond, true},
		{2 * time.Second, 500 * time.Millisecond, true},
	} {
		if got := edgedLagging(tt.lag, tt.timeout); got != tt.want {
			t.Errorf("edgedLagging(%v, %v) = %v, want %v", tt.lag, tt.timeout, got, tt.want)
		}
	}
}
