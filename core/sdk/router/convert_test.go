package router

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"

	routerpb "github.com/umedge/umedge/core/sdk/router/proto"
)

// Messages a plugin in another language could send that no Go plugin
// built on this package can.
func TestFromProtoRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		give    func() error
		wantMsg string
	}{
		{name: "unknown rejection reason", give: func() error {
			_, err := rejectionFromProto(&routerpb.Rejection{Reason: 99})
			return err
		}, wantMsg: `unknown rejection reason 99`},
		{name: "unspecified rejection reason", give: func() error {
			_, err := rejectionFromProto(&routerpb.Rejection{})
			return err
		}, wantMsg: `unknown rejection reason REASON_UNSPECIFIED`},
		{name: "decision without service", give: func() error {
			_, err := decisionFromProto(&routerpb.Decision{Pool: "p"})
			return err
		}, wantMsg: "decision with service SERVICE_UNSPECIFIED"},
		{name: "bad gateway address", give: func() error {
			_, err := tableFromProto(&routerpb.TableResponse{Gateways: []*routerpb.Gateway{{Name: "lab", Addresses: []string{"gw.example.com"}}}})
			return err
		}, wantMsg: `gateway "lab"`},
		{name: "bad call source", give: func() error {
			_, err := callFromProto(&routerpb.Call{Source: "300.1.1.1"})
			return err
		}, wantMsg: "call source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give()
			if err == nil {
				t.Fatal("error = nil")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestRouteResponseWithoutResult(t *testing.T) {
	// The client must not mistake an empty oneof for a decision.
	c := &grpcClient{rpc: emptyRouteClient{}}
	_, err := c.Route(t.Context(), &Call{})
	if err == nil || !strings.Contains(err.Error(), "neither a decision nor a rejection") {
		t.Errorf("Route() error = %v, want a neither-nor error", err)
	}
}

// emptyRouteClient answers Route with a response whose oneof is unset.
type emptyRouteClient struct{ routerpb.RouterClient }

func (emptyRouteClient) Route(context.Context, *routerpb.RouteRequest, ...grpc.CallOption) (*routerpb.RouteResponse, error) {
	return &routerpb.RouteResponse{}, nil
}
