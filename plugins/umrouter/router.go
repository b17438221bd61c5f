package main

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// Plugin identity reported by Info.
const (
	pluginName    = "um.router"
	pluginVersion = "0.1.0"
)

// Router is the umrouter plugin. Configure swaps the whole configuration
// atomically; Route and Table read it without locks.
type Router struct {
	cfg atomic.Pointer[config]
}

var _ router.Router = (*Router)(nil)

// New returns a Router that refuses to route until it is configured.
func New() *Router { return &Router{} }

// Info describes the plugin.
func (r *Router) Info(ctx context.Context) (*base.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &base.Info{
		Kind:       base.KindRouter,
		Name:       pluginName,
		Version:    pluginVersion,
		APIVersion: base.APIVersion,
	}, nil
}

// Configure decodes and validates the plugin's settings table. It returns
// nil, or a *base.ConfigError listing every problem; a refused configuration
// leaves the previous one in place.
func (r *Router) Configure(ctx context.Context, settings []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var p problems
	s := decodeSettings(settings, &p)
	var c *config
	if s != nil {
		c = newConfig(s, settings, &p)
	}
	if err := p.err(); err != nil {
		return err
	}
	r.cfg.Store(c)
	return nil
}

// Table returns a copy of the routing table of the current configuration:
// everything umrouter decides is in it, so the core never needs to call
// Route (no dial plan asks the plugin).
func (r *Router) Table(ctx context.Context) (*router.Table, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := r.cfg.Load()
	if c == nil {
		return nil, errNotConfigured
	}
	return cloneTable(&c.table), nil
}

func cloneTable(src *router.Table) *router.Table {
	t := *src
	t.Gateways = slices.Clone(t.Gateways)
	for i := range t.Gateways {
		t.Gateways[i].Addresses = slices.Clone(t.Gateways[i].Addresses)
		t.Gateways[i].HuntGroups = slices.Clone(t.Gateways[i].HuntGroups)
	}
	t.DialPlans = slices.Clone(t.DialPlans)
	for i := range t.DialPlans {
		t.DialPlans[i].AccessNumbers = slices.Clone(t.DialPlans[i].AccessNumbers)
		t.DialPlans[i].Mailboxes = slices.Clone(t.DialPlans[i].Mailboxes)
	}
	t.Pools = slices.Clone(t.Pools)
	for i := range t.Pools {
		t.Pools[i].Backends = slices.Clone(t.Pools[i].Backends)
	}
	return &t
}

// Route decides one call (um-spec.md §4) from the same compiled table the
// core evaluates. A refusal is a *router.Rejection returned as the error.
func (r *Router) Route(ctx context.Context, call *router.Call) (*router.Decision, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if call == nil {
		return nil, errNilCall
	}
	c := r.cfg.Load()
	if c == nil {
		return nil, errNotConfigured
	}
	return c.compiled.Decide(call)
}
