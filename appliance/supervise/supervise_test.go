package supervise

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/internal/apptest"
)

func script(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "daemon.sh")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func config(path string, out *apptest.LockedBuffer) Config {
	return Config{
		Path: path, Output: out, Env: []string{"PATH=/usr/bin:/bin"},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond,
		StableAfter: time.Hour, StopTimeout: 200 * time.Millisecond,
	}
}

// TestRestartWithBackoff: a daemon that keeps exiting is restarted, each
// time after a longer delay up to BackoffMax, and its output is kept.
func TestRestartWithBackoff(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	out := &apptest.LockedBuffer{}
	s := New(config(script(t, `date +%s%N >> `+starts+`; echo "run $$"; exit 1`), out), Direct, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	apptest.WaitFor(t, func() bool { return strings.Count(out.String(), "run ") >= 6 }, "six runs")
	if s.LastExit() != "exit 1" {
		t.Errorf("LastExit() = %q, want exit 1", s.LastExit())
	}
	cancel()
	<-done

	data, err := os.ReadFile(starts)
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for _, l := range strings.Fields(string(data)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		at = append(at, time.Unix(0, ns))
	}
	// Timers never fire early: each gap is at least its delay.
	delays := []time.Duration{20, 40, 80, 80, 80}
	for i := 1; i < len(at) && i <= len(delays); i++ {
		if gap, want := at[i].Sub(at[i-1]), delays[i-1]*time.Millisecond; gap < want {
			t.Errorf("restart %d came %v after the exit before, want at least %v", i, gap, want)
		}
	}
}

// TestStopAndSignal: SIGHUP reaches the daemon; stopping sends SIGTERM,
// and a daemon that ignores it is killed after StopTimeout.
func TestStopAndSignal(t *testing.T) {
	for _, tt := range []struct {
		name, body, wantOut, wantExit string
	}{
		{"obeys SIGTERM", `trap 'echo got TERM; exit 0' TERM; trap 'echo reloading' HUP; echo up; while :; do sleep 0.02; done`, "got TERM", "exit 0"},
		{"ignores SIGTERM", `trap '' TERM; trap 'echo reloading' HUP; echo up; while :; do sleep 0.02; done`, "", "killed by killed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := &apptest.LockedBuffer{}
			s := New(config(script(t, tt.body), out), Direct, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			apptest.WaitFor(t, func() bool { return strings.Contains(out.String(), "up") }, "the daemon is up")
			if err := s.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			apptest.WaitFor(t, func() bool { return strings.Contains(out.String(), "reloading") }, "SIGHUP handled")

			began := time.Now()
			cancel()
			<-done
			if took := time.Since(began); took > 2*time.Second {
				t.Errorf("stop took %v", took)
			}
			if !strings.Contains(out.String(), tt.wantOut) || s.LastExit() != tt.wantExit {
				t.Errorf("output %q, LastExit %q; want %q and %q", out, s.LastExit(), tt.wantOut, tt.wantExit)
			}
			if err := s.Signal(syscall.SIGHUP); err != ErrNotRunning {
				t.Errorf("Signal after stop = %v, want ErrNotRunning", err)
			}
		})
	}
}

// TestReaperReapsOrphans: as a subreaper (what PID 1 is by nature), the
// reaper hands our child's exit status to its waiter and reaps the
// grandchild it leaves behind, so no zombie stays.
func TestReaperReapsOrphans(t *testing.T) {
	if err := prctlSubreaper(); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	orphans := make(chan int, 4)
	r := NewReaper(func(pid int, _ syscall.WaitStatus) { orphans <- pid })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)

	rd, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	_, exited, err := r.Start("/bin/sh", []string{"sh", "-c", "sleep 0.2 >/dev/null & echo $!; exit 3"},
		&os.ProcAttr{Files: []*os.File{nil, w, os.Stderr}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, _ := rd.Read(line)
	grandchild, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line[:n], err)
	}
	select {
	case st := <-exited:
		if st.ExitStatus() != 3 {
			t.Errorf("exit status %d, want 3", st.ExitStatus())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit status for our child")
	}
	timeout := time.After(5 * time.Second)
	for reaped := false; !reaped; {
		select {
		case pid := <-orphans:
			reaped = pid == grandchild // an earlier run's orphan may come first
		case <-timeout:
			t.Fatal("the orphaned grandchild was not reaped")
		}
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(grandchild)); err == nil {
		t.Errorf("process %d still exists (a zombie?)", grandchild)
	}
}

// TestSupervisorWithReaper: under PID 1's reaper the supervisor knows the
// daemon's real PID: SIGHUP reaches the daemon and nothing else, and its
// exit comes back through the reaper.
func TestSupervisorWithReaper(t *testing.T) {
	r := NewReaper(nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	out := &apptest.LockedBuffer{}
	s := New(config(script(t, `trap 'echo reloading' HUP; echo up $$; while :; do sleep 0.02; done`), out), r, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	apptest.WaitFor(t, func() bool { return strings.Contains(out.String(), "up ") }, "the daemon is up")
	pid := strings.Fields(strings.SplitN(out.String(), "up ", 2)[1])[0]
	s.mu.Lock()
	known := s.pid
	s.mu.Unlock()
	if strconv.Itoa(known) != pid {
		t.Fatalf("supervisor thinks the daemon is pid %d, it is %s", known, pid)
	}
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, func() bool { return strings.Contains(out.String(), "reloading") }, "SIGHUP handled")
	stop()
	<-done
	if s.LastExit() == "" {
		t.Error("no exit status came back through the reaper")
	}
}

// TestLeftoversDieWithTheDaemon: what a crashing daemon started (edged's
// plugin processes) does not outlive it into the next run.
func TestLeftoversDieWithTheDaemon(t *testing.T) {
	out := &apptest.LockedBuffer{}
	s := New(config(script(t, `sleep 30 & echo "child $!"; exit 1`), out), Direct, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	apptest.WaitFor(t, func() bool { return strings.Count(out.String(), "child ") >= 2 }, "two runs")
	cancel()
	<-done
	first := strings.Fields(strings.SplitN(out.String(), "child ", 2)[1])[0]
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatal(err)
	}
	// Killed, it is gone, or a zombie until whoever inherited it reaps it.
	apptest.WaitFor(t, func() bool {
		b, err := os.ReadFile("/proc/" + first + "/stat")
		return err != nil || strings.Contains(string(b), ") Z ")
	}, "the first run's child "+strconv.Itoa(pid)+" to be gone")
}
