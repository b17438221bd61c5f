package base

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// kindShim registers Base without the broker, as every kind package's
// GRPCServer does (router.GRPCPlugin).
type kindShim struct {
	plugin.NetRPCUnsupportedPlugin
	impl Plugin
}

func (k *kindShim) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterServer(s, k.impl)
	return nil
}

func (k *kindShim) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewClient(cc), nil
}

type userPlugin struct {
	mu sync.Mutex
	hs HostServices
}

func (p *userPlugin) Info(context.Context) (*Info, error)     { return &Info{}, nil }
func (p *userPlugin) Configure(context.Context, []byte) error { return nil }
func (p *userPlugin) UseHost(hs HostServices) {
	p.mu.Lock()
	p.hs = hs
	p.mu.Unlock()
}

type nopHost struct{}

func (nopHost) Log(context.Context, slog.Level, string, ...any) error { return nil }
func (nopHost) ReportHealth(context.Context, Health) error            { return nil }

// TestServeRegistersBaseFirst runs a set like router.Serve's through the
// wrapping Serve applies, many times: go-plugin registers the shims in map
// order, and without baseFirst about half the runs would have the kind
// shim register Base without the broker, so Configure could not reach the
// host services.
func TestServeRegistersBaseFirst(t *testing.T) {
	for i := range 16 {
		impl := &userPlugin{}
		set := baseFirst(plugin.PluginSet{
			PluginName: &GRPCPlugin{Impl: impl, Host: nopHost{}},
			"kind":     &kindShim{impl: impl},
		})
		client, server := plugin.TestPluginGRPCConn(t, false, set)
		raw, err := client.Dispense(PluginName)
		if err != nil {
			t.Fatal(err)
		}
		err = raw.(*Client).Configure(t.Context(), nil)
		server.Stop()
		_ = client.Close()
		if err != nil {
			t.Fatalf("run %d: Configure() = %v, want the host services reached", i, err)
		}
		impl.mu.Lock()
		ok := impl.hs != nil
		impl.mu.Unlock()
		if !ok {
			t.Fatalf("run %d: UseHost not called", i)
		}
	}
}

func TestBaseFirstLeavesOtherSets(t *testing.T) {
	set := plugin.PluginSet{"kind": &kindShim{}}
	if got := baseFirst(set); got["kind"] != set["kind"] {
		t.Errorf("baseFirst wrapped a set without a base plugin")
	}
}
