package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/admin"
	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/internal/hep"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/pluginhost"
	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/internal/sipfront"
	"github.com/umedge/umedge/core/internal/telemetry"
	"github.com/umedge/umedge/core/sdk/base"
)

// daemon is one running edged: the only place where the parts meet.
type daemon struct {
	path    string
	store   string // the file PUT /config writes; "" = path's (runOpts.store)
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *telemetry.Metrics

	cfg    atomic.Pointer[config.Config]
	host   *pluginhost.Host
	prober *health.Prober
	engine *routing.Engine // nil without a router plugin
	front  *sipfront.Server
	media  *media.Engine // nil without a router plugin
	b2b    *b2bua.Engine // likewise
	admin  *admin.Server

	capture hep.Config // what the front end's HEP sender was made with; zero = capture off

	gcPercent atomic.Int64 // the GOGC tuneGC set last; 0 = none yet

	reloadMu sync.Mutex
}

func loadConfig(path string) (*config.Config, error) {
	return config.Load(path)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// start loads the config and brings every part up, or fails with all the
// reasons it cannot.
func start(ctx context.Context, path, store string, logOut io.Writer) (_ *daemon, err error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	log, level, err := telemetry.NewLogger(logOut, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return nil, err
	}
	// sipgo logs through a package-wide logger; keep it to warnings.
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	d := &daemon{path: path, store: store, log: log, level: level, metrics: telemetry.NewMetrics()}
	d.cfg.Store(cfg)
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()

	d.host = newPluginHost(cfg, log)
	d.logUnconfigured(cfg)
	if err := d.host.Start(ctx, pluginSpecs(cfg)); err != nil {
		return nil, fmt.Errorf("start plugins:\n%w", pluginProblems(cfg, err))
	}
	d.metrics.WatchPlugins(d.pluginSamples)

	clientTLS, err := healthTLS(cfg)
	if err != nil {
		return nil, err
	}
	d.prober, err = health.New(health.Config{FromHost: cfg.SIP.FQDN, TLS: clientTLS},
		health.WithLogger(log.With("component", "health")))
	if err != nil {
		return nil, err
	}
	d.metrics.WatchHealth(d.healthSamples)

	if name := routerName(cfg); name != "" {
		d.engine = routing.New(engineConfig(cfg), d.host.Router(name), d.prober, routing.WithLogger(log),
			routing.WithLiveness(func() bool { return d.host.Live(name) }))
		d.metrics.WatchRouting(d.routingSample)
		d.host.OnChange(func(changed string) {
			if changed != name {
				return
			}
			_ = d.engine.Refresh(context.Background()) // logs and keeps its failure for /healthz
			d.tuneGC()
		})
		if err := d.engine.Refresh(ctx); err != nil {
			return nil, err
		}
		d.tuneGC()
		d.front = sipfront.New(d.engine, sipfront.WithLogger(log.With("component", "sip")), sipfront.WithMetrics(d.metrics),
			sipfront.WithKnownSource(d.engine.KnownSource))
		fc, err := frontConfig(cfg)
		if err != nil {
			return nil, err
		}
		if err := d.front.Apply(fc); err != nil {
			return nil, err
		}
		if err := d.applyCapture(ctx, cfg); err != nil {
			// Capture is a diagnostic: a collector that does not resolve
			// at boot (DNS not up yet) must not keep the box from serving
			// calls. The next reload tries again.
			log.Error("sip capture not started: calls are served without it until a reload", "err", err)
		}
		if err := d.startSBC(cfg); err != nil {
			return nil, err
		}
	} else {
		log.Warn("no router plugin configured: the Call Router does not listen")
	}

	if cfg.Admin.Listen != "" {
		if d.admin, err = admin.New(d.adminConfig(cfg.Admin.Listen), d, d.metrics.Registry, log.With("component", "admin")); err != nil {
			return nil, err
		}
	}
	log.Info("edged started", "version", telemetry.Version, "config", path)
	return d, nil
}

// logUnconfigured names the plugin binaries in the plugin directory that
// no [plugins.*] table uses: dropped in, but not started until configured
// and pinned.
func (d *daemon) logUnconfigured(cfg *config.Config) {
	found, err := d.host.Discover()
	if err != nil {
		d.log.Warn("cannot list the plugin directory", "dir", cfg.PluginHost.Dir, "err", err)
		return
	}
	used := map[string]bool{}
	for _, p := range cfg.Plugins {
		used[p.Binary] = true
	}
	for _, f := range found {
		if !used[f] {
			d.log.Info("plugin binary found but not configured", "binary", f, "dir", cfg.PluginHost.Dir)
		}
	}
}

// Reload re-reads the config file. A file with any problem, or plugin
// settings a plugin refuses, is refused as a whole and the running config
// stays (DESIGN.md §4).
func (d *daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := loadConfig(d.path)
	if err != nil {
		return fmt.Errorf("config %s:\n%w", d.path, err)
	}
	old := d.cfg.Load()
	if keys := restartOnly(old, cfg); len(keys) > 0 {
		return fmt.Errorf("%w: %s", errNeedsRestart, strings.Join(keys, ", "))
	}
	if err := d.host.Reconfigure(ctx, pluginSpecs(cfg)); err != nil {
		return pluginProblems(cfg, err)
	}
	var errs []error
	if err := telemetry.SetLevel(d.level, cfg.Log.Level); err != nil {
		errs = append(errs, err)
	}
	if d.engine != nil {
		if err := d.engine.Refresh(ctx); err != nil {
			errs = append(errs, err)
		}
		d.tuneGC()
		fc, err := frontConfig(cfg)
		if err == nil {
			err = d.front.Apply(fc)
		}
		errs = append(errs, err, d.applyCapture(ctx, cfg))
	}
	if cfg.Admin.Listen != old.Admin.Listen {
		if err := d.moveAdmin(old.Admin.Listen, cfg.Admin.Listen); err != nil {
			errs = append(errs, err)
			// The running config says where the API really is (the old
			// address, or off), so the next reload tries the move again.
			cfg.Admin.Listen = ""
			if d.admin != nil {
				cfg.Admin.Listen = old.Admin.Listen
			}
		}
	}
	d.cfg.Store(cfg)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", errAppliedInPart, err)
	}
	d.log.Info("config reloaded", "config", d.path)
	return nil
}

// moveAdmin moves the admin API from the address from to to ("" = off).
// The new listener opens before the old one closes, so an address that
// cannot be had (another process holds the port) leaves the API where it
// was, reachable to mend the config through. Only when the new address
// may overlap the old one (the same port on another host) is the old
// server closed first, and opened again if the new one still fails.
func (d *daemon) moveAdmin(from, to string) error {
	if to == "" {
		if d.admin != nil {
			_ = d.admin.Close()
			d.admin = nil
		}
		return nil
	}
	open := func(listen string) (*admin.Server, error) {
		return admin.New(d.adminConfig(listen), d, d.metrics.Registry, d.log.With("component", "admin"))
	}
	a, err := open(to)
	if err != nil && d.admin != nil && errors.Is(err, syscall.EADDRINUSE) && samePort(from, to) {
		_ = d.admin.Close()
		d.admin = nil
		if a, err = open(to); err != nil {
			var rerr error
			if d.admin, rerr = open(from); rerr != nil {
				d.admin = nil
				return errors.Join(err, fmt.Errorf("the admin API is off: back to %s: %w", from, rerr))
			}
		}
	}
	if err != nil {
		if d.admin != nil {
			return fmt.Errorf("%w; the admin API stays on %s", err, from)
		}
		return err
	}
	if d.admin != nil {
		_ = d.admin.Close()
	}
	d.admin = a
	return nil
}

// samePort reports whether the host:port addresses a and b have one port.
func samePort(a, b string) bool {
	_, pa, erra := net.SplitHostPort(a)
	_, pb, errb := net.SplitHostPort(b)
	return erra == nil && errb == nil && pa == pb
}

// errAppliedInPart marks a reload that stored the new config and applied
// some of it but not all: neither the old file nor the new runs whole.
var errAppliedInPart = errors.New("config applied in part")

// errNeedsRestart refuses a reload that changes what only a start sets up.
var errNeedsRestart = errors.New("these changes need a restart, the file was not applied")

// restartOnly lists the keys whose change a reload cannot apply: the
// plugin host is built once, the log handler and the routing engine's ask
// queue too (the log level reloads), and the router plugin is wired into
// the front end at start.
func restartOnly(old, cfg *config.Config) []string {
	var keys []string
	if old.PluginHost != cfg.PluginHost {
		keys = append(keys, "plugin_host")
	}
	if old.Log.Format != cfg.Log.Format {
		keys = append(keys, "log.format")
	}
	if o, n := old.SIP, cfg.SIP; o.AskWorkers != n.AskWorkers || o.AskQueue != n.AskQueue || o.AskTimeout != n.AskTimeout {
		// the engine's queue and workers are made once
		keys = append(keys, "sip.ask_workers, sip.ask_queue, sip.ask_timeout")
	}
	if routerName(old) != routerName(cfg) {
		keys = append(keys, "the router plugin's instance name")
	}
	return append(keys, sbcRestartOnly(old, cfg)...)
}

// Close stops everything, front first so no call is half-handled.
func (d *daemon) Close() error {
	var errs []error
	d.stopSBC()
	if d.front != nil {
		errs = append(errs, d.front.Close())
		d.stopCapture()
	}
	if d.engine != nil {
		d.engine.Close()
	}
	if d.admin != nil {
		errs = append(errs, d.admin.Close())
	}
	if d.prober != nil {
		errs = append(errs, d.prober.Close())
	}
	if d.host != nil {
		errs = append(errs, d.host.Close())
	}
	return errors.Join(errs...)
}

// Healthy is the admin API's /healthz: a routing table is in force, the
// front end listens, and every plugin is live and not degraded.
func (d *daemon) Healthy() error {
	if d.engine == nil {
		return nil
	}
	if d.engine.Table() == nil {
		return errors.New("no routing table yet")
	}
	if len(d.front.Listeners()) == 0 {
		return errors.New("no SIP listener is open")
	}
	// A plugin that does not answer its health probes, or says it is
	// degraded, makes the box degraded even while the last routing table
	// keeps answering calls: a hung plugin is not healthy.
	var problems []string
	if why := d.engine.RefreshError(); why != "" {
		problems = append(problems, "the router plugin's latest routing table is not in force: "+why)
	}
	for _, s := range d.host.Status() {
		switch {
		case !s.Live:
			problems = append(problems, fmt.Sprintf("plugin %s is %s and not live (%d health probes failed, %d hung kills)",
				s.Name, s.State, s.HealthFailures, s.HungKills))
		case s.Degraded:
			problems = append(problems, fmt.Sprintf("plugin %s reports degraded: %s", s.Name, s.DegradedReason))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("degraded: %s; calls are answered from routing table generation %d",
			strings.Join(problems, "; "), d.engine.Stats().Generation)
	}
	return nil
}

func (d *daemon) healthSamples() []telemetry.HealthSample {
	var out []telemetry.HealthSample
	for _, s := range d.prober.Status() {
		out = append(out, telemetry.HealthSample{Target: s.Name, Up: s.Up})
	}
	return out
}

func (d *daemon) pluginSamples() []telemetry.PluginSample {
	var out []telemetry.PluginSample
	for _, s := range d.host.Status() {
		out = append(out, telemetry.PluginSample{Name: s.Name, Restarts: s.Restarts, HungKills: s.HungKills, Up: s.Live})
	}
	return out
}

func newPluginHost(cfg *config.Config, log *slog.Logger) *pluginhost.Host {
	ph := cfg.PluginHost
	return pluginhost.New(pluginhost.Config{
		Dir:            ph.Dir,
		SHA256Sums:     ph.SHA256Sums,
		CallTimeout:    ph.CallTimeout.Duration,
		StartTimeout:   ph.StartTimeout.Duration,
		BackoffMin:     ph.RestartBackoffMin.Duration,
		BackoffMax:     ph.RestartBackoffMax.Duration,
		HealthInterval: ph.HealthInterval.Duration,
		HealthTimeout:  ph.HealthTimeout.Duration,
		DrainTimeout:   ph.DrainTimeout.Duration,
	}, pluginhost.WithLogger(log.With("component", "pluginhost")))
}

func pluginSpecs(cfg *config.Config) []pluginhost.Spec {
	names := make([]string, 0, len(cfg.Plugins))
	for n := range cfg.Plugins {
		names = append(names, n)
	}
	slices.Sort(names)
	specs := make([]pluginhost.Spec, 0, len(names))
	for _, n := range names {
		p := cfg.Plugins[n]
		specs = append(specs, pluginhost.Spec{Name: n, Kind: p.Kind, Binary: p.Binary, SHA256: p.SHA256,
			Settings: p.Settings.TOML, Instances: p.Instances})
	}
	return specs
}

// pluginProblems turns what the plugin host refused at start or reload
// into config problems under the keys of the plugin at fault, with the
// file's line numbers (specProblems).
func pluginProblems(cfg *config.Config, err error) error {
	name := ""
	var re *pluginhost.ReconfigureError
	if errors.As(err, &re) {
		name, _, _ = strings.Cut(re.Plugin, "/") // an instance "w/a" belongs to [plugins.w]
	} else {
		for n := range cfg.Plugins { // Start names the plugin only in text
			if containsWord(err.Error(), n) {
				name = n
			}
		}
	}
	for _, s := range pluginSpecs(cfg) {
		if s.Name == name {
			return errors.Join(specProblems(cfg, s, err)...)
		}
	}
	return err
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w && (i == 0 || !isWordByte(s[i-1])) && (i+len(w) == len(s) || !isWordByte(s[i+len(w)])) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func routerName(cfg *config.Config) string {
	for n, p := range cfg.Plugins {
		if p.Kind == base.KindRouter {
			return n
		}
	}
	return ""
}

func engineConfig(cfg *config.Config) routing.Config {
	s := cfg.SIP
	return routing.Config{AskWorkers: s.AskWorkers, AskQueue: s.AskQueue, AskTimeout: s.AskTimeout.Duration,
		Probes: probeTuning(cfg.SBC.Peers)}
}

// probeTuning is the OPTIONS keep-alive settings of [sbc.peers.<name>]
// (R-SBC-6) for the probes of that gateway or of that pool's back ends.
func probeTuning(peers map[string]config.SBCPeer) map[string]health.Tuning {
	out := map[string]health.Tuning{}
	for name, p := range peers {
		out[name] = health.Tuning{IntervalDown: p.OptionsIntervalDown.Duration, UpAfter: p.OptionsUpAfter, DownAfter: p.OptionsDownAfter}
	}
	return out
}

func (d *daemon) routingSample() telemetry.RoutingSample {
	s := d.engine.Stats()
	return telemetry.RoutingSample{Generation: s.Generation, Decided: s.Decided, Asked: s.Asked, AskFailed: s.AskFailed,
		AskQueueFull: s.AskQueueFull, AskQueued: s.AskQueued, BadTables: s.BadTables}
}

func frontConfig(cfg *config.Config) (sipfront.Config, error) {
	s := cfg.SIP
	fc := sipfront.Config{
		UDP: s.Mode.UsesTCP() && s.UDP, TCP: s.Mode.UsesTCP(), TLS: s.Mode.UsesTLS(),
		TCPPort: s.TCPPort, TLSPort: s.TLSPort, UDPBuffer: s.UDPBufferBytes, DSCP: s.DSCP,
		IdleTimeout: s.TCPIdleTimeout.Duration, RetryAfter: s.RetryAfter.Duration, FQDN: s.FQDN,
		MaxConnections: s.MaxConnections, MaxConnectionsPerSource: s.MaxConnectionsPerSource,
		WriteTimeout: s.TCPWriteTimeout.Duration,
		BanThreshold: s.BanThreshold,
		BanTime:      s.BanTime.Duration,
	}
	for _, a := range s.Listen {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fc, fmt.Errorf("sip.listen: %w", err)
		}
		fc.Listen = append(fc.Listen, ip)
	}
	if fc.TLS {
		tc, err := serverTLS(s.TLS)
		if err != nil {
			return fc, err
		}
		fc.TLSConfig = tc
	}
	return fc, nil
}

// serverTLS is the mutual-TLS server config of the SIP TLS listener
// (um-spec R-SEC-3, R-SEC-6): our certificate, peers' certificates
// required and verified against client_ca, TLS 1.2 at least.
func serverTLS(t config.TLS) (*tls.Config, error) {
	cert, cas, err := tlsIdentity(t)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		MinVersion:   t.MinVersionID(),
		CipherSuites: t.CipherSuiteIDs(),
	}, nil
}

// healthTLS is the client config for OPTIONS probes over TLS: our
// certificate for mutual TLS, and the same CA bundle for the peers. It is
// nil when no TLS identity is configured.
func healthTLS(cfg *config.Config) (*tls.Config, error) {
	t := cfg.SIP.TLS
	if t.Cert == "" || t.ClientCA == "" {
		return nil, nil
	}
	cert, cas, err := tlsIdentity(t)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: cas, MinVersion: t.MinVersionID()}, nil
}

// tlsIdentity loads our certificate and the CAs peers chain to.
func tlsIdentity(t config.TLS) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return cert, nil, fmt.Errorf("sip.tls: load certificate: %w", err)
	}
	pool, err := certPool(t.ClientCA)
	return cert, pool, err
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sip.tls.client_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("sip.tls.client_ca: no certificate in %s", file)
	}
	return pool, nil
}
