package router

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/umedge/umedge/core/sdk/base"
	routerpb "github.com/umedge/umedge/core/sdk/router/proto"
)

// PluginName is the name under which a router plugin serves GRPCPlugin.
// The host dispenses base.PluginName first, then this.
const PluginName = "router"

// GRPCPlugin is the go-plugin shim of a Router. Its server side registers
// both the Base and the Router service; its client side is a Router.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Router // set in the plugin binary; nil in the host
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Base and Router services for p.Impl on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	base.RegisterServer(s, p.Impl)
	routerpb.RegisterRouterServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Router that calls the plugin process over cc.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return newClient(cc), nil
}

// Serve runs impl as a router plugin until the host ends the process. A
// router plugin's main is one line: router.Serve(impl).
func Serve(impl Router) {
	base.Serve(plugin.PluginSet{
		base.PluginName: &base.GRPCPlugin{Impl: impl},
		PluginName:      &GRPCPlugin{Impl: impl},
	})
}
