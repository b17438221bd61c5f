package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/umedge/umedge/appliance/firewall"
	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/hdrrules"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/umedge/umedge/core/internal/telemetry"
	"github.com/umedge/umedge/core/sdk/router"
)

// The SBC: the B2BUA of proxy pools over the one media engine. Both are
// made once at start; their settings ([media], [sbc]) need a restart.

// mediaConfig is the media engine's configuration from [media].
func mediaConfig(m config.Media) media.Config {
	return media.Config{PortMin: m.PortMin, PortMax: m.PortMax, Workers: m.Workers,
		LatchWindow: m.LatchWindow.Duration, InactivityTimeout: m.InactivityTimeout.Duration,
		IdlePairs: m.IdlePairs, FastPath: fastpath.Mode(m.FastPath), SendPath: m.SendPath,
		Police: media.Police{AudioPPS: m.PoliceAudioPPS, AudioKbps: m.PoliceAudioKbps,
			VideoPPS: m.PoliceVideoPPS, VideoKbps: m.PoliceVideoKbps},
		DSCP: media.DSCP{Audio: m.DSCP, Video: m.DSCPVideo}}
}

// startSBC starts the media engine and the B2BUA and hands the front its
// proxy calls.
func (d *daemon) startSBC(cfg *config.Config) error {
	m := cfg.Media
	allow, err := firewallAllows(cfg)
	if err != nil {
		return fmt.Errorf("media engine: %w", err)
	}
	fc, err := frontConfig(cfg)
	if err != nil {
		return err
	}
	// Media binds where SIP listens (a leg's local address is the one its
	// SIP came in on or goes out from), so those are the media interfaces.
	mc := mediaConfig(m)
	mc.FastPathAllow, mc.FastPathAddrs = allow, fc.Listen
	eng, err := media.New(mc, d.log.With("component", "media"))
	if err != nil {
		return fmt.Errorf("media engine: %w", err)
	}
	d.media = eng
	d.metrics.WatchFastPath(d.fastPathSample)
	d.metrics.WatchSendPath(func() telemetry.SendPathSample {
		st := eng.SendPath()
		return telemetry.SendPathSample{Sent: st.Sent, NoHop: st.NoHop, Full: st.Full, Lost: st.Lost}
	})
	var cdr *b2bua.CDRWriter
	if cfg.SBC.CDRFile != "" {
		if cdr, err = b2bua.OpenCDR(cfg.SBC.CDRFile, d.log.With("component", "cdr")); err != nil {
			return fmt.Errorf("sbc.cdr_file: %w", err)
		}
	}
	s := cfg.SBC
	peers, err := peerOptions(s.Peers)
	if err != nil {
		return err
	}
	d.b2b = b2bua.New(b2bua.Config{FQDN: cfg.SIP.FQDN, MaxCalls: s.MaxCalls, CallsPerSecond: s.CallsPerSecond, MaxRedirects: s.MaxRedirects,
		RetryAfter: cfg.SIP.RetryAfter.Duration, RingTimeout: s.RingTimeout.Duration, FailoverTimeout: s.FailoverTimeout.Duration,
		KeepAlive: keepAlive(s.KeepAlive), KeepAliveInterval: s.KeepAliveInterval.Duration, Peers: peers,
		Table: d.routingTable, MaxEnded: s.MaxEnded},
		d.front, mediaAdapter{eng: eng, peers: s.Peers}, cdr, d.log.With("component", "b2bua"))
	d.front.SetB2BUA(d.b2b)
	d.metrics.WatchSBC(d.sbcSample)
	return nil
}

func (d *daemon) sbcSample() telemetry.SBCSample {
	m := &d.b2b.Metrics
	ended, evicted := d.b2b.Ended()
	return telemetry.SBCSample{Active: d.b2b.Active(), Calls: m.Calls.Load(), Answered: m.Answered.Load(), Failed: m.Failed.Load(),
		Refused: m.Refused.Load(), Limited: m.RateLimited.Load(), Ended: ended, EndedEvicted: evicted}
}

// firewallAllows is the policy of the firewall the appliance installs for
// cfg (appliance/firewall): whether UDP to a local media port is accepted.
// Packets on the kernel fast path never meet netfilter, so the engine
// offloads only legs whose ports it accepts.
func firewallAllows(cfg *config.Config) (func(netip.AddrPort) bool, error) {
	rs, err := firewall.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	return func(ap netip.AddrPort) bool { return len(rs.Find(firewall.UDP, ap.Addr(), ap.Port())) > 0 }, nil
}

// fastPathSample is the media fast path's metrics.
func (d *daemon) fastPathSample() telemetry.FastPathSample {
	st := d.media.FastPath()
	s := telemetry.FastPathSample{Active: st.Active, Unavailable: st.Unavail, Sessions: st.Offloaded,
		Offloads: st.Offloads, Removals: st.Removals, Refused: st.Refused, Policed: st.Policed}
	if st.Active {
		s.Packets = make(map[string]uint64, len(st.Reasons))
		for i, n := range st.Reasons {
			s.Packets[fastpath.Reasons[i]] = n
		}
	}
	return s
}

// peerOptions are the B2BUA's per-peer options; its error names the peer
// whose header rules do not compile (config validation has checked them,
// so this is a bug, not an operator's mistake).
func peerOptions(peers map[string]config.SBCPeer) (map[string]b2bua.Peer, error) {
	out := make(map[string]b2bua.Peer, len(peers))
	for name, p := range peers {
		rules := make([]hdrrules.Rule, len(p.HeaderRules))
		for i, r := range p.HeaderRules {
			rules[i] = hdrrules.Rule{Direction: hdrrules.Direction(r.Direction), Header: r.Header, Part: hdrrules.Part(r.Part),
				Match: r.Match, Action: hdrrules.Action(r.Action), Value: r.Value, TargetHeader: r.TargetHeader}
		}
		rs, err := hdrrules.Compile(rules)
		if err != nil {
			return nil, fmt.Errorf("sbc.peers.%s.header_rules: %w", name, err)
		}
		out[name] = b2bua.Peer{Early183: p.Early183, RedirectMode: b2bua.RedirectMode(p.RedirectMode),
			ReferMode: b2bua.ReferMode(p.ReferMode), Rules: rs, CallsPerSecond: p.CallsPerSecond}
	}
	return out, nil
}

func keepAlive(mode string) b2bua.KeepAlive {
	if mode == "off" {
		return b2bua.KeepAliveOff
	}
	return b2bua.KeepAlive(mode)
}

// routingTable is the routing table in force, nil before the first one.
func (d *daemon) routingTable() *router.Table {
	if d.engine == nil {
		return nil
	}
	return d.engine.Table()
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
	lp := media.LegProfile{Local: local, Security: def, Codecs: p.Codecs, DropDTMF: p.DropDTMF, Ptime: p.Ptime}
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

var _ b2bua.Settler = session{} // the call's confirmation settles the media session

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
func (s session) Settle()                { s.s.Settle() }
