package sdktest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/umedge/umedge/core/sdk/router"
	"github.com/umedge/umedge/core/sdk/sdktest"
)

type (
	sdkFixture = sdktest.RouterFixture
	sdkCase    = sdktest.RouterCase
)

func TestRunRouterSuiteFake(t *testing.T) {
	sdktest.RunRouterSuite(t, &fakeRouter{}, fakeFixture())
}

func TestRouterClientRoutes(t *testing.T) {
	r := sdktest.RouterClient(t, &fakeRouter{})
	if err := r.Configure(t.Context(), []byte(fakeSettings)); err != nil {
		t.Fatalf("Configure() error = %v", err)
	}
	call := fakeCall("192.0.2.10", "9999")
	_, err := r.Route(t.Context(), &call)
	if !errors.Is(err, router.ErrUnknownNumber) {
		t.Fatalf("Route() error = %v, want errors.Is %v", err, router.ErrUnknownNumber)
	}
}

// Broken routers, each breaking one rule the suite must catch. They are run
// in a child process (see TestRouterSuiteHelper), because a failing suite
// fails the test that runs it.
var brokenRouters = map[string]func() router.Router{
	// Configure answers garbage with a plain error instead of a *base.ConfigError.
	"plain config error": func() router.Router { return &plainConfigError{fakeRouter: &fakeRouter{}} },
	// A refused Configure wipes the previous configuration.
	"forgets config": func() router.Router { return &forgetsConfig{fakeRouter: &fakeRouter{}} },
	// Route answers differently every other time.
	"flaky": func() router.Router { return &flaky{fakeRouter: &fakeRouter{}} },
	// Route rejects with a reason that is none of router.Reasons.
	"foreign reason": func() router.Router { return &foreignReason{fakeRouter: &fakeRouter{}} },
}

type plainConfigError struct{ *fakeRouter }

func (r *plainConfigError) Configure(ctx context.Context, s []byte) error {
	if err := r.fakeRouter.Configure(ctx, s); err != nil {
		return errors.New("bad settings")
	}
	return nil
}

type forgetsConfig struct{ *fakeRouter }

func (r *forgetsConfig) Configure(ctx context.Context, s []byte) error {
	err := r.fakeRouter.Configure(ctx, s)
	if err != nil {
		r.mu.Lock()
		r.cfg, r.topo = nil, nil
		r.mu.Unlock()
	}
	return err
}

type flaky struct {
	*fakeRouter
	n atomic.Int64
}

func (r *flaky) Route(ctx context.Context, c *router.Call) (*router.Decision, error) {
	d, err := r.fakeRouter.Route(ctx, c)
	if d != nil && r.n.Add(1)%2 == 0 {
		d.Mailbox = "other"
	}
	return d, err
}

type foreignReason struct{ *fakeRouter }

func (r *foreignReason) Route(ctx context.Context, c *router.Call) (*router.Decision, error) {
	d, err := r.fakeRouter.Route(ctx, c)
	var rej *router.Rejection
	if errors.As(err, &rej) {
		return nil, &router.Rejection{Reason: errors.New("not-a-reason"), Detail: rej.Detail}
	}
	return d, err
}

func TestRunRouterSuiteCatchesBrokenRouters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child test processes")
	}
	tests := []struct {
		name string
		want string // in the child's output
	}{
		{name: "plain config error", want: "want a *base.ConfigError"},
		{name: "forgets config", want: "after a refused Configure"},
		{name: "flaky", want: "Mailbox:other"},
		{name: "foreign reason", want: "is none of router.Reasons"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRouterSuiteHelper$", "-test.v")
			cmd.Env = append(os.Environ(), "SDKTEST_BROKEN="+tt.name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("suite on a %q router: err = %v, want a failing child\n%s", tt.name, err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("suite on a %q router: output lacks %q\n%s", tt.name, tt.want, out)
			}
		})
	}
}

// TestRouterSuiteHelper is the child process of
// TestRunRouterSuiteCatchesBrokenRouters.
func TestRouterSuiteHelper(t *testing.T) {
	name := os.Getenv("SDKTEST_BROKEN")
	if name == "" {
		t.Skip("child process of TestRunRouterSuiteCatchesBrokenRouters only")
	}
	mk, ok := brokenRouters[name]
	if !ok {
		t.Fatalf("no broken router %q", name)
	}
	sdktest.RunRouterSuite(t, mk(), fakeFixture())
}
