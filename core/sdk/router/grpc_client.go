package router

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/umedge/umedge/core/sdk/base"
	routerpb "github.com/umedge/umedge/core/sdk/router/proto"
)

// grpcClient runs in the host and makes a remote plugin look like a Router:
// Info and Configure go to the Base service, Table and Route to the
// Router service on the same connection.
type grpcClient struct {
	base.Plugin
	rpc routerpb.RouterClient
}

var _ Router = (*grpcClient)(nil)

func newClient(cc *grpc.ClientConn) *grpcClient {
	return &grpcClient{Plugin: base.NewClient(cc), rpc: routerpb.NewRouterClient(cc)}
}

func (c *grpcClient) Table(ctx context.Context) (*Table, error) {
	resp, err := c.rpc.Table(ctx, &routerpb.TableRequest{})
	if err != nil {
		return nil, base.FromStatus(err)
	}
	return tableFromProto(resp)
}

// Route returns the plugin's *Decision, or its *Rejection as the error.
func (c *grpcClient) Route(ctx context.Context, call *Call) (*Decision, error) {
	resp, err := c.rpc.Route(ctx, &routerpb.RouteRequest{Call: callToProto(call)})
	if err != nil {
		return nil, base.FromStatus(err)
	}
	switch r := resp.GetResult().(type) {
	case *routerpb.RouteResponse_Decision:
		return decisionFromProto(r.Decision)
	case *routerpb.RouteResponse_Rejection:
		rej, err := rejectionFromProto(r.Rejection)
		if err != nil {
			return nil, err
		}
		return nil, rej
	default:
		return nil, fmt.Errorf("%w: route response holds neither a decision nor a rejection", ErrContract)
	}
}
