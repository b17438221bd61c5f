// Command testplugin is a tiny router plugin that the pluginhost tests build
// and run as a real process.
//
// Settings (TOML):
//
//	pool = "a"              // returned as Decision.Pool
//	bad = true              // Configure refuses with a *base.ConfigError
//	crash_on_route = true   // Route makes the process exit with status 3
//	route_delay = "300ms"   // Route takes this long (work in flight for Drain)
//	log = "hello"           // Configure logs this through the host services
//	degraded = "reason"     // Configure reports degraded with this reason
//	log_routes = true       // Route logs "route started" through the host services
//
// Drain refuses new Routes and waits for those in flight.
//
// Environment: TESTPLUGIN_KIND and TESTPLUGIN_API_VERSION override what
// Info reports, to test the host's checks; TESTPLUGIN_EXIT_AT_START makes
// the process exit with status 4 before the handshake.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

type settings struct {
	Pool         string   `toml:"pool"`
	Bad          bool     `toml:"bad"`
	CrashOnRoute bool     `toml:"crash_on_route"`
	RouteDelay   duration `toml:"route_delay"`
	Log          string   `toml:"log"`
	Degraded     string   `toml:"degraded"`
	LogRoutes    bool     `toml:"log_routes"`
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) (err error) {
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

type fakeRouter struct {
	mu         sync.Mutex
	cfg        settings
	generation uint64
	host       base.HostServices
	inFlight   int
	draining   bool
	idle       *sync.Cond // signalled when inFlight drops
}

var (
	_ router.Router = (*fakeRouter)(nil)
	_ base.Drainer  = (*fakeRouter)(nil)
	_ base.HostUser = (*fakeRouter)(nil)
)

func (r *fakeRouter) UseHost(hs base.HostServices) {
	r.mu.Lock()
	r.host = hs
	r.mu.Unlock()
}

func (r *fakeRouter) Drain(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining = true
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.idle.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	for r.inFlight > 0 && ctx.Err() == nil {
		r.idle.Wait()
	}
	if r.inFlight > 0 {
		return r.inFlight, ctx.Err()
	}
	return 0, nil
}

func (r *fakeRouter) Info(context.Context) (*base.Info, error) {
	info := &base.Info{
		Kind:       base.KindRouter,
		Name:       "test.router",
		Version:    "0.0.1",
		APIVersion: base.APIVersion,
	}
	if k := os.Getenv("TESTPLUGIN_KIND"); k != "" {
		info.Kind = base.Kind(k)
	}
	if v := os.Getenv("TESTPLUGIN_API_VERSION"); v != "" {
		info.APIVersion, _ = strconv.Atoi(v)
	}
	return info, nil
}

func (r *fakeRouter) Configure(ctx context.Context, raw []byte) error {
	var s settings
	if _, err := toml.Decode(string(raw), &s); err != nil {
		return &base.ConfigError{Problems: []base.Problem{{Path: "", Message: err.Error()}}}
	}
	if s.Bad {
		return &base.ConfigError{Problems: []base.Problem{{Path: "bad", Message: "must not be true"}}}
	}
	r.mu.Lock()
	r.cfg = s
	r.generation++
	host := r.host
	r.mu.Unlock()
	if host == nil && (s.Log != "" || s.Degraded != "") {
		return errors.New("no host services")
	}
	if s.Log != "" {
		if err := host.Log(ctx, slog.LevelWarn, s.Log, "pool", s.Pool, "plugin", "spoofed"); err != nil {
			return err
		}
	}
	if s.Degraded != "" {
		if err := host.ReportHealth(ctx, base.Health{Degraded: true, Reason: s.Degraded}); err != nil {
			return err
		}
	}
	return nil
}

func (r *fakeRouter) Table(context.Context) (*router.Table, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &router.Table{
		Generation: r.generation,
		Pools:      []router.Pool{{Name: r.cfg.Pool}},
	}, nil
}

func (r *fakeRouter) Route(ctx context.Context, call *router.Call) (*router.Decision, error) {
	r.mu.Lock()
	cfg := r.cfg
	if r.draining {
		r.mu.Unlock()
		return nil, fmt.Errorf("draining: %w", base.ErrUnavailable)
	}
	r.inFlight++
	host := r.host
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.idle.Broadcast()
		r.mu.Unlock()
	}()
	if cfg.CrashOnRoute {
		os.Exit(3)
	}
	if cfg.LogRoutes && host != nil {
		if err := host.Log(ctx, slog.LevelInfo, "route started", "call_id", call.CallID); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(cfg.RouteDelay.Duration):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &router.Decision{Pool: cfg.Pool, Called: call.ToUser, Service: router.DirectVoicemail}, nil
}

func main() {
	if os.Getenv("TESTPLUGIN_EXIT_AT_START") != "" {
		os.Exit(4)
	}
	r := &fakeRouter{}
	r.idle = sync.NewCond(&r.mu)
	router.Serve(r)
}
