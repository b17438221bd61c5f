package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// routerHandle is the stable router.Router the core holds for one plugin
// name. Every call looks up the live process, so the handle survives
// restarts and Reconfigure.
type routerHandle struct {
	h    *Host
	name string
}

var _ router.Router = (*routerHandle)(nil)

// Router returns a handle for the router plugin called name. The handle
// stays valid across restarts and reconfigurations: each call goes to the
// process running at that moment, bounded by Config.CallTimeout. While the
// plugin is not running, calls fail at once with an error wrapping
// ErrNotRunning (and so base.ErrUnavailable).
func (h *Host) Router(name string) router.Router {
	return &routerHandle{h: h, name: name}
}

// live returns the running router process of the handle's plugin with
// one call counted on it; the caller must call p.release when done.
func (r *routerHandle) live() (*proc, error) {
	in := r.h.instance(r.name)
	if in == nil {
		return nil, fmt.Errorf("plugin %s is not configured: %w", r.name, ErrNotRunning)
	}
	p, err := in.acquire()
	if err != nil {
		return nil, err
	}
	if p.router == nil {
		p.release()
		return nil, fmt.Errorf("plugin %s is a %s plugin, not a router: %w", r.name, in.snapshot().Kind, ErrNotRunning)
	}
	return p, nil
}

func (r *routerHandle) Info(ctx context.Context) (*base.Info, error) {
	p, err := r.live()
	if err != nil {
		return nil, err
	}
	defer p.release()
	ctx, cancel := context.WithTimeout(ctx, r.h.cfg.CallTimeout)
	defer cancel()
	info, err := p.router.Info(ctx)
	return info, unavailable(err)
}

// Configure applies settings through the host, so that they are also the
// settings re-applied after a restart, and notifies OnChange on success.
func (r *routerHandle) Configure(ctx context.Context, settings []byte) error {
	return r.h.configure(ctx, r.name, settings)
}

// tableTimeout is the least deadline of a Table call and of Configure: a
// large directory (50,000 mailboxes take the umrouter plugin 2–3 s to
// load) takes longer to build and send than a per-call answer.
const tableTimeout = 10 * time.Second

func (r *routerHandle) Table(ctx context.Context) (*router.Table, error) {
	p, err := r.live()
	if err != nil {
		return nil, err
	}
	defer p.release()
	ctx, cancel := context.WithTimeout(ctx, max(r.h.cfg.CallTimeout, tableTimeout))
	defer cancel()
	t, err := p.router.Table(ctx)
	return t, unavailable(err)
}

func (r *routerHandle) Route(ctx context.Context, call *router.Call) (*router.Decision, error) {
	p, err := r.live()
	if err != nil {
		return nil, err
	}
	defer p.release()
	ctx, cancel := context.WithTimeout(ctx, r.h.cfg.CallTimeout)
	defer cancel()
	d, err := p.router.Route(ctx, call)
	return d, unavailable(err)
}

// unavailable makes sure that a call which failed because the plugin's
// connection broke satisfies errors.Is(err, base.ErrUnavailable), even if
// the SDK adapter left the gRPC status unmapped.
func unavailable(err error) error {
	if err == nil || errors.Is(err, base.ErrUnavailable) {
		return err
	}
	if status.Code(err) == codes.Unavailable {
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return err
}
