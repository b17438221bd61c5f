package base

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the go-plugin handshake shared by the host and every plugin.
// ProtocolVersion changes only with an incompatible wire protocol; the SDK
// contract version is APIVersion, checked through Info.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "UMEDGE_PLUGIN",
	MagicCookieValue: "c6f1e0b4a93d27e58b0f4d6a1c72e93f5b8d04a7e1f3c96d",
}

// PluginName is the name under which every plugin set serves GRPCPlugin.
// The host dispenses it first to check Info.
const PluginName = "base"

// GRPCPlugin is the go-plugin shim of the Base service.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin // set in the plugin binary; nil in the host
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Base service for p.Impl on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterServer(s, p.Impl)
	return nil
}

// GRPCClient returns a Plugin that calls the plugin process over cc.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewClient(cc), nil
}

// NewLogger returns a logger that writes JSON lines to stderr, where the
// host picks them up and re-logs them with the plugin's name and the
// line's level. Plugins log through it (or any hclog JSON logger on
// stderr), never to stdout, which go-plugin owns.
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs plugins over gRPC with Handshake until the host ends the
// process. Kind packages wrap it (router.Serve); a plugin's main calls the
// kind's Serve, not this one.
func Serve(plugins plugin.PluginSet) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugins,
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          NewLogger("plugin"),
	})
}
