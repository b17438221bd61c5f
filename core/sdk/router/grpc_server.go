package router

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/umedge/umedge/core/sdk/base"
	routerpb "github.com/umedge/umedge/core/sdk/router/proto"
)

// grpcServer runs in the plugin and exposes a Router over gRPC.
type grpcServer struct {
	routerpb.UnimplementedRouterServer
	impl Router
}

var _ routerpb.RouterServer = (*grpcServer)(nil)

func (s *grpcServer) Table(ctx context.Context, _ *routerpb.TableRequest) (*routerpb.TableResponse, error) {
	t, err := s.impl.Table(ctx)
	if err != nil {
		return nil, base.ToStatus(err)
	}
	if t == nil {
		return nil, status.Error(codes.Internal, "router: Table returned no table and no error")
	}
	return tableToProto(t), nil
}

// Route sends a *Rejection (found with errors.As) as a normal response;
// only other errors become RPC errors.
func (s *grpcServer) Route(ctx context.Context, req *routerpb.RouteRequest) (*routerpb.RouteResponse, error) {
	call, err := callFromProto(req.GetCall())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d, err := s.impl.Route(ctx, call)
	var rej *Rejection
	switch {
	case errors.As(err, &rej):
		resp, err := rejectionToProto(rej)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return resp, nil
	case err != nil:
		return nil, base.ToStatus(err)
	case d == nil:
		return nil, status.Error(codes.Internal, "router: Route returned no decision and no error")
	}
	return decisionToProto(d), nil
}
