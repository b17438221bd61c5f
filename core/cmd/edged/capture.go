package main

import (
	"context"
	"fmt"
	"time"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/hep"
)

// resolveTimeout bounds the DNS look-up of a collector named by host name.
const resolveTimeout = 2 * time.Second

// applyCapture makes the front end's SIP capture match [capture]: off
// without capture.hep, else a HEP sender to the collector, its host name
// resolved now (at start and at every reload). An unchanged collector
// keeps its sender, queue and connection. On error the running capture
// stays as it was.
func (d *daemon) applyCapture(ctx context.Context, cfg *config.Config) error {
	if d.front == nil {
		return nil
	}
	c := cfg.Capture
	if c.HEP == "" {
		if old := d.front.SetCapture(nil); old != nil {
			_ = old.Close()
			d.log.Info("sip capture off")
		}
		d.capture = hep.Config{}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addr, err := hep.Resolve(ctx, c.HEP)
	if err != nil {
		return fmt.Errorf("capture.hep: %w", err)
	}
	pw, err := c.HEPPassword()
	if err != nil {
		return fmt.Errorf("capture.hep_password_file: %w", err)
	}
	hc := hep.Config{Collector: addr, Network: c.HEPTransport, AgentID: uint32(c.HEPID), AuthKey: string(pw), Queue: c.HEPQueue}
	if hc == d.capture {
		return nil
	}
	h, err := hep.New(hc, hep.WithLogger(d.log.With("component", "capture")), hep.WithMetrics(d.metrics))
	if err != nil {
		return fmt.Errorf("capture.hep: %w", err)
	}
	_ = d.front.SetCapture(h).Close()
	d.capture = hc
	d.log.Info("sip capture on", "collector", addr.String(), "configured", c.HEP, "transport", c.HEPTransport,
		"hep_id", c.HEPID, "auth_key", len(pw) > 0, "queue", c.HEPQueue)
	return nil
}

// stopCapture closes the HEP sender once the front end has stopped.
func (d *daemon) stopCapture() {
	if d.front != nil {
		_ = d.front.SetCapture(nil).Close()
	}
}
