package base

import (
	"context"

	"google.golang.org/grpc"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// grpcClient runs in the host and makes a remote plugin look like a Plugin.
type grpcClient struct {
	rpc basepb.BaseClient
}

var _ Plugin = (*grpcClient)(nil)

// NewClient returns a Plugin that calls the Base service on cc. Kind
// packages embed it in their own clients.
func NewClient(cc *grpc.ClientConn) Plugin {
	return &grpcClient{rpc: basepb.NewBaseClient(cc)}
}

func (c *grpcClient) Info(ctx context.Context) (*Info, error) {
	resp, err := c.rpc.Info(ctx, &basepb.InfoRequest{})
	if err != nil {
		return nil, FromStatus(err)
	}
	return infoFromProto(resp), nil
}

func (c *grpcClient) Configure(ctx context.Context, settings []byte) error {
	resp, err := c.rpc.Configure(ctx, &basepb.ConfigureRequest{Settings: settings})
	if err != nil {
		return FromStatus(err)
	}
	return configErrorFromProto(resp.GetProblems())
}
