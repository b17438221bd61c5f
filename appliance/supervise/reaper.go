package supervise

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Reaper is a Starter for PID 1: it reaps every child that ends, ours and
// the orphans the kernel reparents to init, so none stays a zombie, and
// hands the exit status of the processes it started to their waiters.
// No one else in the process may wait for children while it runs.
type Reaper struct {
	mu      sync.Mutex // held while starting a process, so its exit finds its waiter
	waiters map[int]chan syscall.WaitStatus
	orphan  func(pid int, st syscall.WaitStatus)
}

// NewReaper returns a reaper; orphan, if not nil, hears of each child
// reaped that it did not start.
func NewReaper(orphan func(pid int, st syscall.WaitStatus)) *Reaper {
	return &Reaper{waiters: map[int]chan syscall.WaitStatus{}, orphan: orphan}
}

// Run reaps on every SIGCHLD until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	for {
		r.reap() // also catches what ended before Notify
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var st syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &st, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- st
		} else if r.orphan != nil {
			r.orphan(pid, st)
		}
	}
}

// Start starts a process whose end the reaper reports.
func (r *Reaper) Start(path string, argv []string, attr *os.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid // Release sets it to -1
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	_ = p.Release() // the reaper waits for it, by PID
	return pid, ch, nil
}
