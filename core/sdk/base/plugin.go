package base

import (
	"context"
	"os"
	"sync"

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

	// Host, set in the host, is served to the plugin process over the
	// broker; nil offers no host services. Use one GRPCPlugin per process,
	// so that the services know whom they serve.
	Host HostServices
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Base service for p.Impl on s, with the broker
// through which it reaches the host services.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	register(s, p.Impl, broker)
	return nil
}

// GRPCClient returns a *Client that calls the plugin process over cc.
// With p.Host set, the first Configure starts serving the Host service on
// a new broker ID, until the client is closed, and every Configure hands
// that ID to the plugin. (Not before: a process refused at Info never
// needs it.)
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	c := NewClient(cc)
	if p.Host != nil {
		c.serveHost = sync.OnceValue(func() uint32 {
			id := broker.NextId()
			go broker.AcceptAndServe(id, newHostServer(p.Host))
			return id
		})
	}
	return c, nil
}

// withBase wraps a kind's shim so that its GRPCServer registers the Base
// service of the set's "base" plugin, with the broker, before its own.
// go-plugin calls the shims of a set in map order; a kind shim that
// registered Base first would leave it without the broker.
type withBase struct {
	plugin.Plugin
	kind plugin.GRPCPlugin
	base *GRPCPlugin
}

func (w *withBase) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if err := w.base.GRPCServer(broker, s); err != nil {
		return err
	}
	return w.kind.GRPCServer(broker, s)
}

func (w *withBase) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return w.kind.GRPCClient(ctx, broker, cc)
}

// baseFirst returns plugins with every gRPC shim other than "base" wrapped
// in withBase. A set without a *GRPCPlugin under PluginName is returned
// as it is.
func baseFirst(plugins plugin.PluginSet) plugin.PluginSet {
	bp, ok := plugins[PluginName].(*GRPCPlugin)
	if !ok {
		return plugins
	}
	out := make(plugin.PluginSet, len(plugins))
	for name, p := range plugins {
		gp, isGRPC := p.(plugin.GRPCPlugin)
		if name == PluginName || !isGRPC {
			out[name] = p
			continue
		}
		out[name] = &withBase{Plugin: p, kind: gp, base: bp}
	}
	return out
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
// kind's Serve, not this one. The set's "base" entry registers the Base
// service (with the broker to the host services) before any kind's.
func Serve(plugins plugin.PluginSet) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         baseFirst(plugins),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          NewLogger("plugin"),
	})
}
