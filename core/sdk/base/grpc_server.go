package base

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// grpcServer runs in the plugin and exposes a Plugin over gRPC.
type grpcServer struct {
	basepb.UnimplementedBaseServer
	impl   Plugin
	broker *plugin.GRPCBroker // nil when registered without one

	hostMu sync.Mutex
	hostID uint32 // broker ID UseHost was given a client for; 0 = not yet
}

var _ basepb.BaseServer = (*grpcServer)(nil)

// errNoBroker means the host offered its services but the Base server was
// registered without go-plugin's broker (RegisterServer outside Serve).
var errNoBroker = errors.New("host services offered, but the base server has no broker; serve with the kind's Serve")

// RegisterServer registers the Base service for impl on s, without access
// to the host services. Every kind's GRPCServer calls it, so a kind plugin
// is complete on its own; when Base is already registered on s (the "base"
// plugin of the same set got there first) it does nothing. Serve makes
// sure the "base" plugin, which has the broker, always gets there first.
func RegisterServer(s *grpc.Server, impl Plugin) {
	register(s, impl, nil)
}

func register(s *grpc.Server, impl Plugin, broker *plugin.GRPCBroker) {
	if _, ok := s.GetServiceInfo()[basepb.Base_ServiceDesc.ServiceName]; ok {
		return
	}
	basepb.RegisterBaseServer(s, &grpcServer{impl: impl, broker: broker})
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
	if err := s.useHost(req.GetHostBrokerId()); err != nil {
		return nil, ToStatus(err)
	}
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

// useHost connects a HostUser to the host services on broker ID id, once
// per process.
func (s *grpcServer) useHost(id uint32) error {
	hu, ok := s.impl.(HostUser)
	if !ok || id == 0 {
		return nil
	}
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	if s.hostID != 0 {
		return nil
	}
	if s.broker == nil {
		return errNoBroker
	}
	conn, err := s.broker.Dial(id)
	if err != nil {
		return fmt.Errorf("dial host services: %w: %w", ErrUnavailable, err)
	}
	s.hostID = id
	hu.UseHost(&hostClient{rpc: basepb.NewHostClient(conn)})
	return nil
}

// Drain asks a Drainer to become idle within the request's timeout; any
// other plugin is idle at once.
func (s *grpcServer) Drain(ctx context.Context, req *basepb.DrainRequest) (*basepb.DrainResponse, error) {
	d, ok := s.impl.(Drainer)
	if !ok {
		return &basepb.DrainResponse{Idle: true}, nil
	}
	if ms := req.GetTimeoutMs(); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	n, err := d.Drain(ctx)
	switch {
	case err == nil:
		return &basepb.DrainResponse{Idle: true}, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return &basepb.DrainResponse{InFlight: uint32(max(n, 0))}, nil
	default:
		return nil, ToStatus(err)
	}
}
