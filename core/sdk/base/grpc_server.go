package base

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// grpcServer runs in the plugin and exposes a Plugin over gRPC.
type grpcServer struct {
	basepb.UnimplementedBaseServer
	impl Plugin
}

var _ basepb.BaseServer = (*grpcServer)(nil)

// RegisterServer registers the Base service for impl on s. Every kind's
// GRPCServer calls it, so a kind plugin is complete on its own; when Base is
// already registered on s (the "base" plugin of the same set got there
// first) it does nothing.
func RegisterServer(s *grpc.Server, impl Plugin) {
	if _, ok := s.GetServiceInfo()[basepb.Base_ServiceDesc.ServiceName]; ok {
		return
	}
	basepb.RegisterBaseServer(s, &grpcServer{impl: impl})
}

func (s *grpcServer) Info(ctx context.Context, _ *basepb.InfoRequest) (*basepb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, ToStatus(err)
	}
	if info == nil {
		return nil, status.Error(codes.Internal, "plugin: Info returned no info and no error")
	}
	return infoToProto(info), nil
}

func (s *grpcServer) Configure(ctx context.Context, req *basepb.ConfigureRequest) (*basepb.ConfigureResponse, error) {
	err := s.impl.Configure(ctx, req.GetSettings())
	if err == nil {
		return &basepb.ConfigureResponse{}, nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		return nil, ToStatus(err)
	}
	if len(ce.Problems) == 0 {
		// A refusal must reach the host as a refusal, even without detail.
		return &basepb.ConfigureResponse{Problems: []*basepb.Problem{{Message: "settings refused"}}}, nil
	}
	return &basepb.ConfigureResponse{Problems: problemsToProto(ce.Problems)}, nil
}
