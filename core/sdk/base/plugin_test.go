package base_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/umedge/umedge/core/sdk/base"
	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// fakePlugin returns what it is told to and records the settings it got.
type fakePlugin struct {
	info         *base.Info
	err          error
	configureErr error
	got          []byte
}

func (f *fakePlugin) Info(ctx context.Context) (*base.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f.info, f.err
}

func (f *fakePlugin) Configure(_ context.Context, settings []byte) error {
	f.got = settings
	return f.configureErr
}

func newPair(t *testing.T, impl base.Plugin) (base.Plugin, *plugin.GRPCServer) {
	t.Helper()
	return newHostPair(t, impl, nil)
}

func TestInfoRoundTrip(t *testing.T) {
	want := &base.Info{Kind: base.KindWorker, Name: "um.worker", Version: "1.2.3", APIVersion: base.APIVersion}
	p, _ := newPair(t, &fakePlugin{info: want})
	got, err := p.Info(t.Context())
	if err != nil {
		t.Fatalf("Info() error = %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
}

func TestInfoErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    *fakePlugin
		cancel  bool
		wantIs  error
		wantMsg string
	}{
		{name: "plain error", give: &fakePlugin{err: errors.New("no license")}, wantMsg: "plugin: no license"},
		{name: "nil info", give: &fakePlugin{}, wantMsg: "no info"},
		{name: "unavailable", give: &fakePlugin{err: fmt.Errorf("backend: %w", base.ErrUnavailable)}, wantIs: base.ErrUnavailable},
		{name: "cancelled ctx", give: &fakePlugin{info: &base.Info{}}, cancel: true, wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPair(t, tt.give)
			ctx, cancel := context.WithCancel(t.Context())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			_, err := p.Info(ctx)
			if err == nil {
				t.Fatal("Info() error = nil")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Info() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Info() error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	three := &base.ConfigError{Problems: []base.Problem{
		{Path: "gateway.lab.status", Message: "unknown status \"on\""},
		{Path: "pool.a.backend", Message: "required"},
		{Path: "", Message: "parse settings: line 3"},
	}}
	tests := []struct {
		name         string
		give         error
		wantProblems []base.Problem // nil: no *base.ConfigError
		wantNil      bool
		wantMsg      string
	}{
		{name: "accepted", wantNil: true},
		{name: "three problems", give: three, wantProblems: three.Problems},
		{name: "wrapped config error", give: fmt.Errorf("decode: %w", three), wantProblems: three.Problems},
		{name: "config error without problems", give: &base.ConfigError{},
			wantProblems: []base.Problem{{Message: "settings refused"}}},
		{name: "plain error", give: errors.New("cannot read key file"), wantMsg: "cannot read key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			impl := &fakePlugin{configureErr: tt.give}
			p, _ := newPair(t, impl)
			settings := []byte("digits = 4\n")
			err := p.Configure(t.Context(), settings)
			if string(impl.got) != string(settings) {
				t.Errorf("plugin got settings %q, want %q", impl.got, settings)
			}
			if tt.wantNil {
				if err != nil {
					t.Fatalf("Configure() error = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Configure() error = nil")
			}
			var ce *base.ConfigError
			if tt.wantProblems == nil {
				if errors.As(err, &ce) {
					t.Errorf("Configure() error = %v, want no *base.ConfigError", err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Configure() error = %q, want it to contain %q", err, tt.wantMsg)
				}
				return
			}
			if !errors.As(err, &ce) {
				t.Fatalf("Configure() error = %v (%T), want a *base.ConfigError", err, err)
			}
			if !reflect.DeepEqual(ce.Problems, tt.wantProblems) {
				t.Errorf("problems = %+v, want %+v", ce.Problems, tt.wantProblems)
			}
		})
	}
}

func TestUnavailableAfterServerStops(t *testing.T) {
	p, server := newPair(t, &fakePlugin{info: &base.Info{Kind: base.KindRouter}})
	if _, err := p.Info(t.Context()); err != nil {
		t.Fatalf("Info() error = %v", err)
	}
	server.Stop()
	_, err := p.Info(t.Context())
	if !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("Info() after the plugin stopped: error = %v, want errors.Is base.ErrUnavailable", err)
	}
}

func TestRegisterServerTwice(t *testing.T) {
	s := grpc.NewServer()
	defer s.Stop()
	impl := &fakePlugin{}
	base.RegisterServer(s, impl)
	base.RegisterServer(s, impl) // would be fatal if it registered again
	if _, ok := s.GetServiceInfo()[basepb.Base_ServiceDesc.ServiceName]; !ok {
		t.Fatal("Base service is not registered")
	}
}
