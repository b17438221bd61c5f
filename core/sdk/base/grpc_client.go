package base

import (
	"context"
	"time"

	"google.golang.org/grpc"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// drainGrace is how much longer than the drain timeout the host waits for
// Drain's answer, so that a plugin that used all its time can still say
// how much work it left.
const drainGrace = 250 * time.Millisecond

// Client runs in the host and makes a remote plugin look like a Plugin. It
// also drains the plugin, and hands it the broker ID of the host services
// with every Configure.
type Client struct {
	rpc basepb.BaseClient

	// serveHost starts serving the Host service and returns its broker
	// ID, once, at the first Configure; nil offers none.
	serveHost func() uint32
}

var _ Plugin = (*Client)(nil)

// NewClient returns a Client that calls the Base service on cc, offering
// no host services. Kind packages embed it in their own clients.
func NewClient(cc *grpc.ClientConn) *Client {
	return &Client{rpc: basepb.NewBaseClient(cc)}
}

// Info describes the plugin binary.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	resp, err := c.rpc.Info(ctx, &basepb.InfoRequest{})
	if err != nil {
		return nil, FromStatus(err)
	}
	return infoFromProto(resp), nil
}

// Configure hands the plugin its settings; a refusal is a *ConfigError.
func (c *Client) Configure(ctx context.Context, settings []byte) error {
	var hostID uint32
	if c.serveHost != nil {
		hostID = c.serveHost()
	}
	resp, err := c.rpc.Configure(ctx, &basepb.ConfigureRequest{Settings: settings, HostBrokerId: hostID})
	if err != nil {
		return FromStatus(err)
	}
	return configErrorFromProto(resp.GetProblems())
}

// Drain asks the plugin to stop taking new work and to finish what is in
// flight within timeout. The call itself may take drainGrace longer, so
// the plugin's answer arrives. An error means the plugin did not answer
// (it is hung or gone, or ctx ended).
func (c *Client) Drain(ctx context.Context, timeout time.Duration) (DrainResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+drainGrace)
	defer cancel()
	resp, err := c.rpc.Drain(ctx, &basepb.DrainRequest{TimeoutMs: max(timeout.Milliseconds(), 1)})
	if err != nil {
		return DrainResult{}, FromStatus(err)
	}
	return DrainResult{Idle: resp.GetIdle(), InFlight: int(resp.GetInFlight())}, nil
}
