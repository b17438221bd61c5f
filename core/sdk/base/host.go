package base

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// hostClient runs in the plugin and makes the host's Host service look
// like HostServices.
type hostClient struct {
	rpc basepb.HostClient
}

var _ HostServices = (*hostClient)(nil)

func (c *hostClient) Log(ctx context.Context, level slog.Level, msg string, args ...any) error {
	_, err := c.rpc.Log(ctx, &basepb.LogRequest{Level: logLevelToProto(level), Message: msg, Attrs: attrsToProto(args)})
	return FromStatus(err)
}

func (c *hostClient) ReportHealth(ctx context.Context, h Health) error {
	_, err := c.rpc.ReportHealth(ctx, healthToProto(h))
	return FromStatus(err)
}

// hostServer runs in the host and serves impl as the Host service.
type hostServer struct {
	basepb.UnimplementedHostServer
	impl HostServices
}

var _ basepb.HostServer = (*hostServer)(nil)

// newHostServer returns the gRPC server the host runs on the broker.
func newHostServer(impl HostServices) func([]grpc.ServerOption) *grpc.Server {
	return func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		basepb.RegisterHostServer(s, &hostServer{impl: impl})
		return s
	}
}

func (s *hostServer) Log(ctx context.Context, req *basepb.LogRequest) (*basepb.LogResponse, error) {
	attrs := attrsFromProto(req.GetAttrs())
	args := make([]any, len(attrs))
	for i, a := range attrs {
		args[i] = a
	}
	if err := s.impl.Log(ctx, logLevelFromProto(req.GetLevel()), req.GetMessage(), args...); err != nil {
		return nil, ToStatus(err)
	}
	return &basepb.LogResponse{}, nil
}

func (s *hostServer) ReportHealth(ctx context.Context, req *basepb.ReportHealthRequest) (*basepb.ReportHealthResponse, error) {
	if err := s.impl.ReportHealth(ctx, healthFromProto(req)); err != nil {
		return nil, ToStatus(err)
	}
	return &basepb.ReportHealthResponse{}, nil
}
