package router_test

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// TestMain turns the test binary into a router plugin when a host starts it
// with the handshake cookie, so that TestServeRealProcess can exercise
// Serve, the handshake and a real crash without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv(base.Handshake.MagicCookieKey) == base.Handshake.MagicCookieValue {
		router.Serve(&stubRouter{
			routeErr: &router.Rejection{Reason: router.ErrGatewayDraining, Gateway: "lab", Detail: "draining"},
		})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestServeRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a plugin process")
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: base.Handshake,
		Plugins: plugin.PluginSet{
			base.PluginName:   &base.GRPCPlugin{},
			router.PluginName: &router.GRPCPlugin{},
		},
		Cmd:              exec.Command(os.Args[0]),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Output: hclog.DefaultOutput, Level: hclog.Warn}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}

	raw, err := rpc.Dispense(base.PluginName)
	if err != nil {
		t.Fatalf("Dispense(base) error = %v", err)
	}
	info, err := raw.(base.Plugin).Info(t.Context())
	if err != nil || info.Kind != base.KindRouter || info.APIVersion != base.APIVersion {
		t.Fatalf("Info() = %+v, %v", info, err)
	}
	raw, err = rpc.Dispense(router.PluginName)
	if err != nil {
		t.Fatalf("Dispense(router) error = %v", err)
	}
	r := raw.(router.Router)
	call := &router.Call{Transport: router.TCP, Source: netip.MustParseAddr("127.0.0.1")}
	_, err = r.Route(t.Context(), call)
	var rej *router.Rejection
	// The gateway does not cross the wire: the core fills it in from its table.
	if !errors.As(err, &rej) || !errors.Is(err, router.ErrGatewayDraining) || rej.Detail != "draining" {
		t.Fatalf("Route() error = %v, want a gateway-draining *router.Rejection with its detail", err)
	}

	// A crashed plugin surfaces as base.ErrUnavailable.
	proc, err := os.FindProcess(client.ReattachConfig().Pid)
	if err != nil {
		t.Fatalf("find plugin process: %v", err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatalf("kill plugin process: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !client.Exited() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := r.Route(t.Context(), call); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Route() after the plugin died: error = %v, want errors.Is base.ErrUnavailable", err)
	}
}
