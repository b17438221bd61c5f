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

	mu        sync.Mutex
	spec      Spec
	proc      *proc // nil unless state is running, hung or draining
	state     State
	restarts  int
	hungKills int
	lastErr   string
	since     time.Time
	info      Status // PluginName and Version of the last process that started
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

// acquire returns the running process with one call counted on it, or an
// error wrapping ErrNotRunning. The caller must call p.release when the
// call is done; stop waits for the calls of a drained process.
func (in *instance) acquire() (*proc, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != StateRunning || in.proc == nil {
		return nil, fmt.Errorf("plugin %s is %s: %w", in.name, in.state, ErrNotRunning)
	}
	in.proc.calls.Add(1) // under in.mu, so never after stop has set StateDraining
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
	spec, inst := splitName(in.spec.Name)
	st := Status{
		Name:       in.spec.Name,
		Spec:       spec,
		Instance:   inst,
		Kind:       in.spec.Kind,
		PluginName: in.info.PluginName,
		Version:    in.info.Version,
		State:      in.state,
		Restarts:   in.restarts,
		HungKills:  in.hungKills,
		LastError:  in.lastErr,
		Since:      in.since,
	}
	if in.state == StateRunning {
		st.PID = in.info.PID
	}
	if p := in.proc; p != nil {
		st.HealthFailures, _ = p.health()
		st.Live = in.state == StateRunning && st.HealthFailures == 0
		h := p.host.reported()
		st.Degraded, st.DegradedReason = h.Degraded, h.Reason
	}
	return st
}

// configure hands settings to the running process and, when it accepts
// them, records them as the ones to re-apply after a restart.
func (in *instance) configure(ctx context.Context, settings []byte) error {
	p, err := in.acquire()
	if err != nil {
		return err
	}
	defer p.release()
	cctx, cancel := context.WithTimeout(ctx, max(in.h.cfg.CallTimeout, tableTimeout))
	defer cancel()
	if err := p.base.Configure(cctx, settings); err != nil {
		return unavailable(err)
	}
	in.mu.Lock()
	in.spec.Settings = bytes.Clone(settings)
	in.mu.Unlock()
	return nil
}

// stop ends supervision, drains the process (new calls through the
// handles fail at once meanwhile) and ends it, and waits for all of it.
func (in *instance) stop() {
	in.cancel()
	<-in.done
	in.mu.Lock()
	p := in.proc
	if p != nil {
		in.state = StateDraining
		in.since = time.Now()
	}
	in.mu.Unlock()
	if p != nil {
		log := in.h.log.With(pluginAttr, in.name)
		start := time.Now()
		res, err := p.stop(context.Background(), in.h.cfg.DrainTimeout)
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case err != nil:
			log.Warn("plugin did not answer drain, killed", "pid", p.pid, "took", took, "err", err)
		case !res.Idle:
			log.Warn("plugin not idle after drain, killed", "pid", p.pid, "in_flight", res.InFlight, "took", took)
		default:
			log.Info("plugin drained and stopped", "pid", p.pid, "took", took)
		}
	}
	in.mu.Lock()
	in.proc = nil
	in.state = StateStopped
	in.since = time.Now()
	in.mu.Unlock()
}

// supervise watches the running process and restarts it after it exits
// or was killed as hung, with exponential backoff, until stop is called
// or a restart fails for a reason that retrying cannot fix.
func (in *instance) supervise() {
	defer close(in.done)
	cfg := in.h.cfg
	log := in.h.log.With(pluginAttr, in.name)
	backoff := cfg.BackoffMin

	for {
		in.mu.Lock()
		p := in.proc
		in.mu.Unlock()
		if !in.watch(p) {
			return
		}
		reason := p.exitReason()
		lastErr := "process exited: " + reason
		if _, hung := p.health(); hung != "" {
			lastErr = hung + "; " + lastErr
		}
		if time.Since(p.started) >= resetAfter {
			backoff = cfg.BackoffMin
		}
		in.mu.Lock()
		in.proc = nil
		in.restarts++
		in.state = StateBackoff
		in.lastErr = lastErr
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

// watch blocks until p exits (true) or the instance is stopped (false).
// Meanwhile it probes p every HealthInterval, one probe at a time, each
// bounded by HealthTimeout; after HungAfter failures in a row it marks the
// instance hung and kills p, whose exit then takes the restart path.
func (in *instance) watch(p *proc) bool {
	cfg := in.h.cfg
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	next := time.NewTimer(cfg.HealthInterval)
	defer next.Stop()
	due := time.Now().Add(cfg.HealthInterval)
	var lag time.Duration          // how late the probe in flight started
	results := make(chan error, 1) // the probe in flight never blocks
	for {
		select {
		case <-in.ctx.Done():
			return false
		case <-poll.C:
			if p.exited() {
				return true
			}
		case <-next.C:
			lag = time.Since(due)
			go func() { results <- p.probe(in.ctx, cfg.HealthTimeout) }()
		case err := <-results:
			if err != nil && edgedLagging(lag, cfg.HealthTimeout) {
				// edged itself could not run on time (a flood, a starved
				// box): the miss says nothing of the plugin.
				in.h.log.Debug("plugin health probe inconclusive, edged was late", pluginAttr, in.name, "late", lag, "err", err)
				due = time.Now().Add(cfg.HealthInterval)
				next.Reset(cfg.HealthInterval)
				continue
			}
			n := p.recordProbe(err)
			due = time.Now().Add(cfg.HealthInterval)
			switch {
			case err == nil:
				next.Reset(cfg.HealthInterval)
			case n < HungAfter:
				in.h.log.Warn("plugin failed a health probe", pluginAttr, in.name, "pid", p.pid,
					"failures", n, "err", err)
				next.Reset(cfg.HealthInterval)
			case in.ctx.Err() == nil:
				in.hang(p, n, err) // no more probes: wait for the exit
			}
		}
	}
}

// hang marks the instance hung and kills p.
func (in *instance) hang(p *proc, failures int, err error) {
	reason := fmt.Sprintf("hung: %d health probes failed in a row (last: %v), killed", failures, err)
	in.mu.Lock()
	in.state = StateHung
	in.since = time.Now()
	in.hungKills++
	in.lastErr = reason
	in.mu.Unlock()
	in.h.log.Error("plugin hung, killing it", pluginAttr, in.name, "pid", p.pid, "failures", failures, "err", err)
	if kerr := p.killHung(reason); kerr != nil {
		in.h.log.Error("kill hung plugin", pluginAttr, in.name, "err", kerr)
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

// edgedLagging reports whether a probe that started lag after it was due
// says more about edged than about the plugin: when edged's own timers run
// late by half the probe timeout, its goroutines are starved too, and the
// probe's answer may have been there but not read in time.
func edgedLagging(lag, timeout time.Duration) bool {
	return lag > timeout/2
}
