package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/telemetry"
	"github.com/umedge/umedge/core/sdk/router"
)

// The SBC: the B2BUA of proxy pools over the one media engine. Both are
// made once at start; their settings ([media], [sbc]) need a restart.

// startSBC starts the media engine and the B2BUA and hands the front its
// proxy calls.
func (d *daemon) startSBC(cfg *config.Config) error {
	m := cfg.Media
	eng, err := media.New(media.Config{PortMin: m.PortMin, PortMax: m.PortMax, Workers: m.Workers,
		LatchWindow: m.LatchWindow.Duration, InactivityTimeout: m.InactivityTimeout.Duration},
		d.log.With("component", "media"))
	if err != nil {
		return fmt.Errorf("media engine: %w", err)
	}
	d.media = eng
	var cdr *b2bua.CDRWriter
	if cfg.SBC.CDRFile != "" {
		if cdr, err = b2bua.OpenCDR(cfg.SBC.CDRFile, d.log.With("component", "cdr")); err != nil {
			return fmt.Errorf("sbc.cdr_file: %w", err)
		}
	}
	s := cfg.SBC
	d.b2b = b2bua.New(b2bua.Config{FQDN: cfg.SIP.FQDN, MaxCalls: s.MaxCalls, CallsPerSecond: s.CallsPerSecond, MaxRedirects: s.MaxRedirects,
		RetryAfter: cfg.SIP.RetryAfter.Duration, RingTimeout: s.RingTimeout.Duration, FailoverTimeout: s.FailoverTimeout.Duration,
		KeepAlive: keepAlive(s.KeepAlive), KeepAliveInterval: s.KeepAliveInterval.Duration, Peers: peerOptions(s.Peers)},
		d.front, mediaAdapter{eng: eng, peers: s.Peers}, cdr, d.log.With("component", "b2bua"))
	d.front.SetB2BUA(d.b2b)
	d.metrics.WatchSBC(d.sbcSample)
	return nil
}

func (d *daemon) sbcSample() telemetry.SBCSample {
	m := &d.b2b.Metrics
	return telemetry.SBCSample{Active: d.b2b.Active(), Calls: m.Calls.Load(), Answered: m.Answered.Load(), Failed: m.Failed.Load(),
		Refused: m.Refused.Load(), Limited: m.RateLimited.Load()}
}

func peerOptions(peers map[string]config.SBCPeer) map[string]b2bua.Peer {
	out := make(map[string]b2bua.Peer, len(peers))
	for name, p := range peers {
		out[name] = b2bua.Peer{Early183: p.Early183, CallsPerSecond: p.CallsPerSecond}
	}
	return out
}

func keepAlive(mode string) b2bua.KeepAlive {
	if mode == "off" {
		return b2bua.KeepAliveOff
	}
	return b2bua.KeepAlive(mode)
}

// stopSBC ends every proxy call (BYE on both legs, CDRs written) while the
// front can still send, then stops the media.
func (d *daemon) stopSBC() {
	if d.b2b != nil {
		d.b2b.Shutdown(2 * time.Second) // returns once the BYEs are answered, or at the deadline
	}
	if d.media != nil {
		_ = d.media.Close()
	}
}

// sbcRestartOnly lists the [media] and [sbc] changes a reload cannot apply.
func sbcRestartOnly(old, cfg *config.Config) []string {
	var keys []string
	if old.Media != cfg.Media {
		keys = append(keys, "media")
	}
	o, n := old.SBC, cfg.SBC
	if o.MaxCalls != n.MaxCalls || o.CallsPerSecond != n.CallsPerSecond || o.MaxRedirects != n.MaxRedirects || o.RingTimeout != n.RingTimeout || o.FailoverTimeout != n.FailoverTimeout ||
		o.KeepAlive != n.KeepAlive || o.KeepAliveInterval != n.KeepAliveInterval ||
		o.CDRFile != n.CDRFile || fmt.Sprint(o.Peers) != fmt.Sprint(n.Peers) {
		keys = append(keys, "sbc")
	}
	return keys
}

// mediaAdapter gives the B2BUA sessions of the media engine with each
// leg's profile: [sbc.peers.<gateway>] for the caller's leg,
// [sbc.peers.<pool>] for the back end's; a Secured dial plan's back-end leg
// is SRTP-only unless a profile says otherwise.
type mediaAdapter struct {
	eng   *media.Engine
	peers map[string]config.SBCPeer
}

func (a mediaAdapter) NewSession(callID string, t *b2bua.Target, aLocal, bLocal netip.Addr, onTimeout func()) (b2bua.MediaSession, error) {
	pa := a.profile(t.Gateway, aLocal, media.SecurityAsIs)
	def := media.SecurityAsIs
	if t.Security == router.Secured {
		def = media.SecuritySRTP
	}
	pb := a.profile(t.Pool, bLocal, def)
	s, err := a.eng.NewSession(callID, pa, pb, onTimeout)
	if err != nil {
		return nil, mediaError(err)
	}
	return session{s}, nil
}

func (a mediaAdapter) profile(name string, local netip.Addr, def media.Security) media.LegProfile {
	p := a.peers[name]
	lp := media.LegProfile{Local: local, Security: def, Codecs: p.Codecs, DropDTMF: p.DropDTMF}
	switch p.MediaSecurity {
	case config.MediaAsIs:
		lp.Security = media.SecurityAsIs
	case config.MediaRTP:
		lp.Security = media.SecurityRTP
	case config.MediaSRTP:
		lp.Security = media.SecuritySRTP
	case config.MediaBoth:
		lp.Security = media.SecurityBoth
	}
	return lp
}

// mediaError maps the media engine's errors onto the B2BUA's answers.
func mediaError(err error) error {
	switch {
	case errors.Is(err, media.ErrNoPorts):
		return fmt.Errorf("%w: %w", b2bua.ErrNoMediaPorts, err)
	case errors.Is(err, media.ErrBadSDP), errors.Is(err, media.ErrNotAcceptable):
		return fmt.Errorf("%w: %w", b2bua.ErrSDP, err)
	}
	return err
}

type session struct{ s *media.Session }

func (s session) Offer(from b2bua.Side, sdp []byte) ([]byte, error) {
	b, err := s.s.Offer(media.Side(from), sdp)
	return b, mediaError(err)
}

func (s session) Answer(from b2bua.Side, sdp []byte) ([]byte, error) {
	b, err := s.s.Answer(media.Side(from), sdp)
	return b, mediaError(err)
}

func (s session) Reject(from b2bua.Side) { s.s.Reject(media.Side(from)) }
func (s session) Close()                 { s.s.Close() }
func (s session) Stats() any             { return s.s.Stats() }
