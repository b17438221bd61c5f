// Package supervise runs a daemon (edged) and restarts it with backoff
// when it exits, sending its output to the log; and, for PID 1, reaps
// every child, including the orphans that the kernel hands to init.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// Starter starts a process and reports, on the channel, how it ended.
type Starter interface {
	Start(path string, argv []string, attr *os.ProcAttr) (pid int, exited <-chan syscall.WaitStatus, err error)
}

// Direct starts processes and waits for each one by its PID: for a
// supervisor that is not PID 1. PID 1 uses a Reaper instead.
var Direct Starter = direct{}

type direct struct{}

func (direct) Start(path string, argv []string, attr *os.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	go func() {
		st, err := p.Wait()
		if err != nil {
			ch <- syscall.WaitStatus(0xff00) // as if exit 255: Wait itself failed
			return
		}
		ch <- st.Sys().(syscall.WaitStatus)
	}()
	return p.Pid, ch, nil
}

// Config says what to run and how to restart it.
type Config struct {
	Path   string    // the binary
	Args   []string  // arguments after the binary's name
	Env    []string  // environment; nil = none
	Output io.Writer // where its stdout and stderr go

	BackoffMin  time.Duration // delay before the first restart
	BackoffMax  time.Duration // the delay doubles up to this
	StableAfter time.Duration // a run this long resets the delay to BackoffMin
	StopTimeout time.Duration // SIGTERM, then SIGKILL after this
}

// Supervisor keeps one process running.
type Supervisor struct {
	cfg     Config
	starter Starter
	log     *slog.Logger

	mu       sync.Mutex
	pid      int // 0 while not running
	starts   int
	lastExit string
}

// New returns a supervisor; Run starts it.
func New(cfg Config, starter Starter, log *slog.Logger) *Supervisor {
	return &Supervisor{cfg: cfg, starter: starter, log: log}
}

// Run starts the process and restarts it whenever it ends, waiting
// between restarts, until ctx ends; then it stops the process (SIGTERM,
// SIGKILL after StopTimeout) and returns.
func (s *Supervisor) Run(ctx context.Context) {
	delay := s.cfg.BackoffMin
	for {
		began := time.Now()
		exited, drained, err := s.start()
		if err != nil {
			s.log.Error("start failed", "path", s.cfg.Path, "err", err, "retry_in", delay)
		} else {
			select {
			case st := <-exited:
				s.exited(st, time.Since(began), drained)
			case <-ctx.Done():
				s.stop(exited, drained)
				return
			}
		}
		if time.Since(began) >= s.cfg.StableAfter {
			delay = s.cfg.BackoffMin
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, s.cfg.BackoffMax)
	}
}

// start starts the process; drained is closed when its output is copied.
func (s *Supervisor) start() (exited <-chan syscall.WaitStatus, drained chan struct{}, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, nil, err
	}
	attr := &os.ProcAttr{
		Env:   s.cfg.Env,
		Files: []*os.File{devnull, w, w},
		Sys:   &syscall.SysProcAttr{Setsid: true}, // its own process group, so Stop reaches its children
	}
	s.mu.Lock()
	pid, exited, err := s.starter.Start(s.cfg.Path, append([]string{s.cfg.Path}, s.cfg.Args...), attr)
	if err == nil && pid <= 0 {
		// kill(2) with 0 or -1 would signal the whole group or every process.
		err = fmt.Errorf("%w: %d", errBadPID, pid)
	}
	if err == nil {
		s.pid = pid
		s.starts++
	}
	s.mu.Unlock()
	_ = w.Close() // the child has its copies
	_ = devnull.Close()
	if err != nil {
		_ = r.Close()
		return nil, nil, err
	}
	drained = make(chan struct{})
	go func() {
		defer close(drained)
		defer r.Close()
		_, _ = io.Copy(s.cfg.Output, r) // ends when the last holder of w exits
	}()
	s.log.Info("started", "path", s.cfg.Path, "pid", pid)
	return exited, drained, nil
}

// drainWait bounds how long an exit waits for the last of the output: a
// child the daemon left running may hold the pipe open.
const drainWait = time.Second

func drain(drained <-chan struct{}) {
	t := time.NewTimer(drainWait)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
	}
}

// exited records the end of a run. What the daemon started and left
// behind (a crashed edged's plugin processes) goes with it: it ran in a
// process group of its own. Then the rest of its output is copied.
func (s *Supervisor) exited(st syscall.WaitStatus, ran time.Duration, drained <-chan struct{}) {
	why := describe(st)
	s.mu.Lock()
	if s.pid > 0 {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	drain(drained)
	s.mu.Lock()
	s.pid = 0
	s.lastExit = why
	s.mu.Unlock()
	s.log.Warn("exited", "path", s.cfg.Path, "status", why, "ran", ran.Round(time.Millisecond))
}

func (s *Supervisor) stop(exited <-chan syscall.WaitStatus, drained <-chan struct{}) {
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case st := <-exited:
		s.exited(st, 0, drained)
		return
	case <-t.C:
	}
	s.log.Warn("did not stop in time; killing", "path", s.cfg.Path, "pid", pid, "timeout", s.cfg.StopTimeout)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	s.exited(<-exited, 0, drained)
}

// ErrNotRunning is what Signal returns between runs.
var ErrNotRunning = errors.New("supervise: process not running")

// errBadPID: a Starter returned a PID that kill(2) would take for a group.
var errBadPID = errors.New("starter returned an unusable pid")

// Signal sends sig to the running process (SIGHUP: reload).
func (s *Supervisor) Signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return ErrNotRunning
	}
	return syscall.Kill(s.pid, sig)
}

// Starts is how many times the process was started.
func (s *Supervisor) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// LastExit describes how the last run ended, "" before the first end.
func (s *Supervisor) LastExit() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastExit
}

func describe(st syscall.WaitStatus) string {
	switch {
	case st.Exited():
		return fmt.Sprintf("exit %d", st.ExitStatus())
	case st.Signaled():
		return "killed by " + st.Signal().String()
	}
	return fmt.Sprintf("wait status %#x", uint32(st))
}
