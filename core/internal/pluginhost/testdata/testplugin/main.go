// Command testplugin is a tiny router plugin that the pluginhost tests build
// and run as a real process.
//
// Settings (TOML):
//
//	pool = "a"              // returned as Decision.Pool
//	bad = true              // Configure refuses with a *base.ConfigError
//	crash_on_route = true   // Route makes the process exit with status 3
//
// Environment: TESTPLUGIN_KIND and TESTPLUGIN_API_VERSION override what
// Info reports, to test the host's checks; TESTPLUGIN_EXIT_AT_START makes
// the process exit with status 4 before the handshake.
package main

import (
	"context"
	"os"
	"strconv"
	"sync"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

type settings struct {
	Pool         string `toml:"pool"`
	Bad          bool   `toml:"bad"`
	CrashOnRoute bool   `toml:"crash_on_route"`
}

type fakeRouter struct {
	mu         sync.Mutex
	cfg        settings
	generation uint64
}

var _ router.Router = (*fakeRouter)(nil)

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

func (r *fakeRouter) Configure(_ context.Context, raw []byte) error {
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
	r.mu.Unlock()
	return nil
}

func (r *fakeRouter) Topology(context.Context) (*router.Topology, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &router.Topology{
		Generation: r.generation,
		Pools:      []router.Pool{{Name: r.cfg.Pool}},
	}, nil
}

func (r *fakeRouter) Route(_ context.Context, call *router.Call) (*router.Decision, error) {
	r.mu.Lock()
	cfg := r.cfg
	r.mu.Unlock()
	if cfg.CrashOnRoute {
		os.Exit(3)
	}
	return &router.Decision{Pool: cfg.Pool, Called: call.ToUser, Service: router.DirectVoicemail}, nil
}

func main() {
	if os.Getenv("TESTPLUGIN_EXIT_AT_START") != "" {
		os.Exit(4)
	}
	router.Serve(&fakeRouter{})
}
