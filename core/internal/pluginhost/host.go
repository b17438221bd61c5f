// Package pluginhost discovers, verifies, starts, configures, supervises and
// restarts plugin processes.
package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// Defaults for zero Config durations.
const (
	DefaultCallTimeout    = 5 * time.Second
	DefaultStartTimeout   = 10 * time.Second
	DefaultBackoffMin     = 50 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = 500 * time.Millisecond
	DefaultDrainTimeout   = 5 * time.Second
)

// HungAfter is how many health probes in a row a running plugin may fail
// before the host declares it hung, kills it (SIGKILL) and restarts it
// with backoff like any crashed plugin.
const HungAfter = 3

// binaryPrefix is the file name prefix Discover looks for.
const binaryPrefix = "umedge-plugin-"

// Config configures a Host. Zero durations take the Default* values.
type Config struct {
	Dir        string // plugin directory
	SHA256Sums string // optional sha256sum(1)-format file pinning binaries by file name

	CallTimeout  time.Duration // bound of every plugin call made through the host
	StartTimeout time.Duration // spawn until handshake

	// BackoffMin is the delay before the first restart of a crashed
	// plugin; each further crash doubles it up to BackoffMax. A plugin
	// that ran for 10 s starts again from BackoffMin.
	BackoffMin, BackoffMax time.Duration

	// HealthInterval is the pause between two liveness probes of a
	// running plugin (go-plugin's gRPC health service, service "plugin"),
	// each bounded by HealthTimeout. HungAfter failures in a row kill it.
	HealthInterval, HealthTimeout time.Duration

	// DrainTimeout bounds Drain, which the host calls before it stops a
	// process on Reconfigure and Close; then the process is ended.
	DrainTimeout time.Duration
}

// Spec is one configured plugin ([plugins.<name>]).
type Spec struct {
	Name     string    // e.g. "umrouter"; no "/"
	Kind     base.Kind // the kind the config expects; Info must agree
	Binary   string    // file name inside Config.Dir
	SHA256   string    // hex pin; "" = look the binary up in Config.SHA256Sums
	Settings []byte    // the plugin's own TOML table, handed to Configure

	// Instances, when set, runs the spec as that many processes (worker A
	// and B), each with its own state, named "<Name>/<instance>" in
	// Status, Live and the handles. Empty: one process named Name.
	Instances []string
}

// State is where a plugin is in its lifecycle.
type State string

// Plugin states.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff"  // crashed; waiting to restart
	StateHung     State = "hung"     // failed HungAfter health probes; being killed
	StateDraining State = "draining" // being stopped; finishing its work in flight
	StateFailed   State = "failed"   // could not start; not retried
	StateStopped  State = "stopped"
)

// Status reports one plugin instance.
type Status struct {
	Name       string // "<Spec>/<Instance>", or Spec for a single instance
	Spec       string // the Spec's Name
	Instance   string // "" for a single instance
	Kind       base.Kind
	PluginName string // from Info, e.g. "um.router"
	Version    string // from Info
	State      State
	PID        int // 0 unless running
	Restarts   int // restarts after crashes and hung kills
	LastError  string
	Since      time.Time // when State was entered

	// Live is true while the plugin runs and answered its last health
	// probe; HealthFailures counts the probes it failed since.
	Live           bool
	HealthFailures int
	HungKills      int // times it was killed for failing HungAfter probes

	// Degraded and DegradedReason are what the running process last said
	// through base.HostServices.ReportHealth.
	Degraded       bool
	DegradedReason string
}

// Option changes a Host for tests or embedding.
type Option func(*Host)

// WithLogger sets the logger; go-plugin's and the plugins' own log lines go
// there too, with a "plugin" attribute. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(h *Host) { h.log = l }
}

// Host owns the plugin processes of one edged.
type Host struct {
	cfg Config
	log *slog.Logger

	opMu   sync.Mutex // serialises Start, Reconfigure, Close and Configure
	closed bool

	mu        sync.Mutex
	instances map[string]*instance
	onChange  []func(name string)
}

// New returns a Host; it starts nothing.
func New(cfg Config, opts ...Option) *Host {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.CallTimeout, DefaultCallTimeout},
		{&cfg.StartTimeout, DefaultStartTimeout},
		{&cfg.BackoffMin, DefaultBackoffMin},
		{&cfg.BackoffMax, DefaultBackoffMax},
		{&cfg.HealthInterval, DefaultHealthInterval},
		{&cfg.HealthTimeout, DefaultHealthTimeout},
		{&cfg.DrainTimeout, DefaultDrainTimeout},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	h := &Host{cfg: cfg, log: slog.Default(), instances: make(map[string]*instance)}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Discover returns the file names of the plugin binaries in Config.Dir
// (regular files named umedge-plugin-*), sorted.
func (h *Host) Discover() ([]string, error) {
	entries, err := os.ReadDir(h.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("discover plugins: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), binaryPrefix) {
			continue
		}
		fi, err := os.Stat(filepath.Join(h.cfg.Dir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		names = append(names, e.Name())
	}
	return names, nil
}

// OnChange registers fn to be called after a plugin (re)started and was
// configured, after the handle's Configure succeeded, and after a
// successful Reconfigure for every plugin it added, changed or removed.
// fn runs on a host goroutine; it may call Router and Status but must not
// call Start, Reconfigure or Close.
func (h *Host) OnChange(fn func(name string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onChange = append(h.onChange, fn)
}

func (h *Host) notify(names ...string) {
	h.mu.Lock()
	fns := slices.Clone(h.onChange)
	h.mu.Unlock()
	for _, n := range names {
		for _, fn := range fns {
			fn(n)
		}
	}
}

func (h *Host) instance(name string) *instance {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.instances[name]
}

// Start starts every plugin of specs in parallel. It returns all start
// errors joined, each naming its plugin. A plugin that fails to start is
// not retried: it stays in StateFailed with the error in its Status until
// a Reconfigure lists it again.
func (h *Host) Start(ctx context.Context, specs []Spec) error {
	specs, err := expand(specs)
	if err != nil {
		return err
	}
	h.opMu.Lock()
	started, err := h.start(ctx, specs)
	h.opMu.Unlock()
	h.notify(started...)
	return err
}

func (h *Host) start(ctx context.Context, specs []Spec) ([]string, error) {
	if h.closed {
		return nil, ErrClosed
	}
	h.mu.Lock()
	var errs []error
	var todo []*instance
	for _, s := range specs {
		if _, ok := h.instances[s.Name]; ok {
			errs = append(errs, fmt.Errorf("plugin %s: %w", s.Name, errAlreadyUsed))
			continue
		}
		in := newInstance(h, cloneSpec(s))
		h.instances[s.Name] = in
		todo = append(todo, in)
	}
	h.mu.Unlock()

	results := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, in := range todo {
		wg.Go(func() {
			p, err := h.startProcess(ctx, in.snapshot())
			if err != nil {
				results[i] = fmt.Errorf("plugin %s: %w", in.name, err)
				in.fail(results[i])
				return
			}
			in.run(p)
		})
	}
	wg.Wait()

	var started []string
	for i, in := range todo {
		if results[i] == nil {
			started = append(started, in.name)
		}
	}
	return started, errors.Join(append(errs, results...)...)
}

// Check starts each plugin of specs in a throw-away process, verifies its
// pin and Info, hands it its settings and stops it again. It is what
// `edged config check` runs. All errors are returned joined, each naming
// its plugin; a refused configuration is findable with errors.As as a
// *base.ConfigError.
func (h *Host) Check(ctx context.Context, specs []Spec) error {
	specs, err := expand(specs)
	if err != nil {
		return err
	}
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Go(func() {
			p, err := h.startProcess(ctx, s)
			if err != nil {
				errs[i] = fmt.Errorf("plugin %s: %w", s.Name, err)
				return
			}
			_, _ = p.stop(ctx, h.cfg.DrainTimeout) // a check only starts it: how it stops says nothing of its config
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// configure applies settings to the running plugin name and keeps them for
// restarts; it is the handle's Configure.
func (h *Host) configure(ctx context.Context, name string, settings []byte) error {
	h.opMu.Lock()
	in := h.instance(name)
	var err error
	switch {
	case h.closed:
		err = ErrClosed
	case in == nil:
		err = fmt.Errorf("plugin %s is not configured: %w", name, ErrNotRunning)
	default:
		err = in.configure(ctx, settings)
	}
	h.opMu.Unlock()
	if err != nil {
		return fmt.Errorf("configure plugin %s: %w", name, err)
	}
	h.notify(name)
	return nil
}

// change is one step of a Reconfigure, kept so it can be rolled back.
type change struct {
	name        string
	old         *instance // nil when added
	proc        *proc     // new process; nil when only the settings changed
	spec        Spec      // the new spec
	oldSettings []byte    // settings to restore when only the settings changed
}

// Reconfigure applies a new set of plugins: it configures changed
// settings on running plugins, starts added ones, restarts those whose
// binary, pin or kind changed (and failed ones, and ones that are down and
// get new settings), and stops removed ones. New processes are started and
// configured before any old one is stopped. If any plugin refuses, every
// change already made is rolled back and a *ReconfigureError naming that
// plugin is returned; its Err may be a *base.ConfigError.
func (h *Host) Reconfigure(ctx context.Context, specs []Spec) error {
	specs, err := expand(specs)
	if err != nil {
		return err
	}
	h.opMu.Lock()
	changed, err := h.reconfigure(ctx, specs)
	h.opMu.Unlock()
	if err != nil {
		return err
	}
	h.notify(changed...)
	return nil
}

func (h *Host) reconfigure(ctx context.Context, specs []Spec) ([]string, error) {
	if h.closed {
		return nil, ErrClosed
	}
	var done []change
	rollback := func() {
		for _, c := range slices.Backward(done) {
			if c.proc != nil {
				c.proc.kill()
				continue
			}
			if err := c.old.configure(context.WithoutCancel(ctx), c.oldSettings); err != nil {
				// The instance keeps the old settings in its spec either
				// way; a restart re-applies them.
				h.log.Error("roll back plugin settings", pluginAttr, c.name, "err", err)
			}
			c.old.mu.Lock()
			c.old.spec.Settings = c.oldSettings
			c.old.mu.Unlock()
		}
	}

	for _, s := range specs {
		s = cloneSpec(s)
		old := h.instance(s.Name)
		var cur Spec
		var state State
		if old != nil {
			cur = old.snapshot()
			state = old.status().State
		}
		same := old != nil && s.Kind == cur.Kind && s.Binary == cur.Binary && s.SHA256 == cur.SHA256
		switch {
		case same && bytes.Equal(s.Settings, cur.Settings) && state != StateFailed && state != StateStopped:
			// Unchanged; if it is restarting, its supervisor is on it.
		case same && state == StateRunning:
			if err := old.configure(ctx, s.Settings); err != nil {
				rollback()
				return nil, &ReconfigureError{Plugin: s.Name, Err: err}
			}
			done = append(done, change{name: s.Name, old: old, spec: s, oldSettings: cur.Settings})
		default: // added, binary/pin/kind changed, or new settings for a plugin that is down
			p, err := h.startProcess(ctx, s)
			if err != nil {
				rollback()
				return nil, &ReconfigureError{Plugin: s.Name, Err: err}
			}
			done = append(done, change{name: s.Name, old: old, proc: p, spec: s})
		}
	}

	// Commit: swap in new processes, then stop replaced and removed ones.
	var stop []*instance
	var changed []string
	h.mu.Lock()
	for _, c := range done {
		changed = append(changed, c.name)
		if c.proc == nil {
			continue
		}
		in := newInstance(h, c.spec)
		if c.old != nil {
			stop = append(stop, c.old)
		}
		h.instances[c.name] = in
		in.run(c.proc)
	}
	keep := make(map[string]bool, len(specs))
	for _, s := range specs {
		keep[s.Name] = true
	}
	for name, in := range h.instances {
		if !keep[name] {
			stop = append(stop, in)
			delete(h.instances, name)
			changed = append(changed, name)
		}
	}
	h.mu.Unlock()
	stopAll(stop)
	slices.Sort(changed)
	return changed, nil
}

// Live reports whether the plugin instance name (as in Status.Name) is
// running and answered its last health probe. The daemon's /healthz
// reports degraded while the router plugin is not live.
func (h *Host) Live(name string) bool {
	in := h.instance(name)
	return in != nil && in.status().Live
}

// Status reports every plugin instance, sorted by name.
func (h *Host) Status() []Status {
	h.mu.Lock()
	ins := make([]*instance, 0, len(h.instances))
	for _, in := range h.instances {
		ins = append(ins, in)
	}
	h.mu.Unlock()
	out := make([]Status, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops every plugin process and waits for them and for the
// supervisors to end. Calling it again does nothing.
func (h *Host) Close() error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.mu.Lock()
	ins := make([]*instance, 0, len(h.instances))
	for _, in := range h.instances {
		ins = append(ins, in)
	}
	h.mu.Unlock()
	stopAll(ins)
	return nil
}

func stopAll(ins []*instance) {
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(in.stop)
	}
	wg.Wait()
}

// instanceSep joins a Spec's name and an instance's: "umworker/a".
const instanceSep = "/"

// expand validates specs and returns one Spec per process: a Spec with
// Instances becomes one copy per instance, named "<Name>/<instance>",
// with Instances cleared. It rejects empty and duplicate names and names
// with a "/" in them.
func expand(specs []Spec) ([]Spec, error) {
	out := make([]Spec, 0, len(specs))
	var errs []error
	bad := func(s Spec, i int, err error) {
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("plugin #%d: %w", i+1, err))
			return
		}
		errs = append(errs, fmt.Errorf("plugin %s: %w", s.Name, err))
	}
	specNames := make(map[string]bool, len(specs))
	for i, s := range specs {
		switch {
		case s.Name == "":
			bad(s, i, errNoName)
			continue
		case strings.Contains(s.Name, instanceSep):
			bad(s, i, fmt.Errorf("%w: %q has a %q", errBadName, s.Name, instanceSep))
			continue
		case specNames[s.Name]:
			errs = append(errs, fmt.Errorf("%w: %s", errDuplicate, s.Name))
			continue
		}
		specNames[s.Name] = true
		if len(s.Instances) == 0 {
			out = append(out, cloneSpec(s))
			continue
		}
		seen := make(map[string]bool, len(s.Instances))
		for _, inst := range s.Instances {
			switch {
			case inst == "" || strings.Contains(inst, instanceSep):
				bad(s, i, fmt.Errorf("%w: instance %q", errBadName, inst))
			case seen[inst]:
				bad(s, i, fmt.Errorf("%w: instance %s", errDuplicate, inst))
			default:
				seen[inst] = true
				c := cloneSpec(s)
				c.Name = s.Name + instanceSep + inst
				c.Instances = nil
				out = append(out, c)
			}
		}
	}
	seen := make(map[string]bool, len(out))
	for _, s := range out {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%w: %s", errDuplicate, s.Name))
		}
		seen[s.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// splitName returns the Spec name and the instance of an instance name.
func splitName(name string) (spec, inst string) {
	spec, inst, _ = strings.Cut(name, instanceSep)
	return spec, inst
}

func cloneSpec(s Spec) Spec {
	s.Settings = bytes.Clone(s.Settings)
	s.Instances = slices.Clone(s.Instances)
	return s
}
