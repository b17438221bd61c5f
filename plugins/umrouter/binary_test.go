package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// TestBinary builds the real plugin binary, starts it with go-plugin the way
// the host does (the host's own pluginhost is core/internal, out of a
// plugin's reach), and routes a call through it.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the plugin binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "umedge-plugin-umrouter")
	build := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Without the handshake cookie the binary refuses to run.
	if err := exec.Command(bin).Run(); err == nil {
		t.Error("binary ran without the go-plugin handshake, want an exit status")
	}

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: base.Handshake,
		Plugins: plugin.PluginSet{
			base.PluginName:   &base.GRPCPlugin{},
			router.PluginName: &router.GRPCPlugin{},
		},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	raw, err := rpc.Dispense(router.PluginName)
	if err != nil {
		t.Fatalf("dispense router: %v", err)
	}
	r, ok := raw.(router.Router)
	if !ok {
		t.Fatalf("dispensed %T, want a router.Router", raw)
	}

	ctx := t.Context()
	info, err := r.Info(ctx)
	if err != nil || info.Name != pluginName || info.Kind != base.KindRouter {
		t.Fatalf("Info() = %+v, %v; want %s router", info, err, pluginName)
	}
	settings, err := os.ReadFile(filepath.Join("testdata", "route.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(ctx, []byte("colour = 1")); !errors.As(err, new(*base.ConfigError)) {
		t.Errorf("Configure(bad) error = %v, want a *base.ConfigError", err)
	}
	if err := r.Configure(ctx, settings); err != nil {
		t.Fatalf("Configure() error = %v", err)
	}
	call := labCall("1002")
	d, err := r.Route(ctx, &call)
	if err != nil || d.Pool != "remote" || d.Mailbox != "bob" {
		t.Errorf("Route() = %+v, %v; want mailbox bob in pool remote", d, err)
	}
	call = labCall("1009")
	if _, err := r.Route(ctx, &call); !errors.Is(err, router.ErrUnknownNumber) {
		t.Errorf("Route(unknown number) error = %v, want %v", err, router.ErrUnknownNumber)
	}
}
