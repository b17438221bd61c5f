package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// resetAfter is how long a plugin must run before a crash counts as the
// first one again, i.e. its restart backoff falls back to BackoffMin.
const resetAfter = 10 * time.Second

// pollInterval is how often the supervisor asks go-plugin whether the
// process has exited. Client.Exited is a mutex-guarded bool, so this is cheap.
const pollInterval = 10 * time.Millisecond

// instance is one configured plugin: its spec (with the last settings the
// plugin accepted), its current process, if any, and its supervisor.
type instance struct {
	h    *Host
	name string // == spec.Name, immutable

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	done   chan struct{} // closed when the supervisor has returned

	mu       sync.Mutex
	spec     Spec
	proc     *proc // nil unless state is running
	state    State
	restarts int
	lastErr  string
	since    time.Time
	info     Status // PluginName and Version of the last process that started
}

func newInstance(h *Host, s Spec) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	return &instance{
		h: h, name: s.Name, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		spec: s, state: StateStarting, since: time.Now(),
	}
}

// run records p as the running process and starts the supervisor.
func (in *instance) run(p *proc) {
	in.setRunning(p)
	go in.supervise()
}

// fail records a start failure; the plugin is not retried.
func (in *instance) fail(err error) {
	in.mu.Lock()
	in.proc = nil
	in.state = StateFailed
	in.lastErr = err.Error()
	in.since = time.Now()
	in.mu.Unlock()
	close(in.done)
}

func (in *instance) setRunning(p *proc) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.proc = p
	in.state = StateRunning
	in.since = time.Now()
	in.info.PluginName = p.info.Name
	in.info.Version = p.info.Version
	in.info.PID = p.pid
}

func (in *instance) setState(st State, lastErr string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.state = st
	in.since = time.Now()
	if lastErr != "" {
		in.lastErr = lastErr
	}
}

// live returns the running process, or an error wrapping ErrNotRunning.
func (in *instance) live() (*proc, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != StateRunning || in.proc == nil {
		return nil, fmt.Errorf("plugin %s is %s: %w", in.name, in.state, ErrNotRunning)
	}
	return in.proc, nil
}

func (in *instance) snapshot() Spec {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.spec
}

func (in *instance) status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := Status{
		Name:       in.spec.Name,
		Kind:       in.spec.Kind,
		PluginName: in.info.PluginName,
		Version:    in.info.Version,
		State:      in.state,
		Restarts:   in.restarts,
		LastError:  in.lastErr,
		Since:      in.since,
	}
	if in.state == StateRunning {
		st.PID = in.info.PID
	}
	return st
}

// configure hands settings to the running process and, when it accepts
// them, records them as the ones to re-apply after a restart.
func (in *instance) configure(ctx context.Context, settings []byte) error {
	p, err := in.live()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, in.h.cfg.CallTimeout)
	defer cancel()
	if err := p.base.Configure(cctx, settings); err != nil {
		return unavailable(err)
	}
	in.mu.Lock()
	in.spec.Settings = bytes.Clone(settings)
	in.mu.Unlock()
	return nil
}

// stop ends supervision and the process, and waits for both.
func (in *instance) stop() {
	in.cancel()
	<-in.done
	in.mu.Lock()
	p := in.proc
	in.proc = nil
	in.state = StateStopped
	in.since = time.Now()
	in.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// supervise watches the running process and restarts it after it exits,
// with exponential backoff, until stop is called or a restart fails for
// a reason that retrying cannot fix.
func (in *instance) supervise() {
	defer close(in.done)
	cfg := in.h.cfg
	log := in.h.log.With(pluginAttr, in.name)
	backoff := cfg.BackoffMin

	for {
		in.mu.Lock()
		p := in.proc
		in.mu.Unlock()
		if !in.waitExit(p) {
			return
		}
		reason := p.exitReason()
		if time.Since(p.started) >= resetAfter {
			backoff = cfg.BackoffMin
		}
		in.mu.Lock()
		in.proc = nil
		in.restarts++
		in.state = StateBackoff
		in.lastErr = "process exited: " + reason
		in.since = time.Now()
		in.mu.Unlock()
		log.Error("plugin process exited", "pid", p.pid, "reason", reason, "restart_in", backoff)
		p.kill() // reap go-plugin's goroutines and socket directory

		for {
			if !in.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, cfg.BackoffMax)
			in.setState(StateStarting, "")
			np, err := in.h.startProcess(in.ctx, in.snapshot())
			if in.ctx.Err() != nil {
				if np != nil {
					np.kill()
				}
				return
			}
			if err == nil {
				in.setRunning(np)
				log.Info("plugin restarted", "pid", np.pid)
				in.h.notify(in.name)
				break
			}
			if permanent(err) {
				in.setState(StateFailed, err.Error())
				log.Error("plugin restart failed, giving up", "err", err)
				return
			}
			in.setState(StateBackoff, err.Error())
			log.Error("plugin restart failed", "err", err, "restart_in", backoff)
		}
	}
}

// waitExit blocks until p exits (true) or the instance is stopped (false).
func (in *instance) waitExit(p *proc) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-in.ctx.Done():
			return false
		case <-t.C:
			if p.exited() {
				return true
			}
		}
	}
}

// sleep waits d, or returns false early when the instance is stopped.
func (in *instance) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-in.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
