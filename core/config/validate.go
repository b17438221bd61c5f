package config

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/umedge/umedge/core/sdk/hostname"
	"github.com/umedge/umedge/core/sdk/kind"
)

// Validate checks the configuration and returns every problem, joined with
// errors.Join. Each is a *FieldError wrapping one of the package sentinels,
// with Line filled when the parsed file defines the key (or, failing that,
// the alternative key or enclosing table the problem is about). Problems are
// ordered by line; those without a line come last. Validate reads the TLS
// files named in sip.tls to check them.
func (c *Config) Validate() error { return c.validate(nil, nil) }

// validator collects problems for one Validate run.
type validator struct {
	c    *Config
	list []problem
}

func (v *validator) add(path string, err error, alt ...string) {
	v.list = append(v.list, problem{path: path, err: err, alt: alt})
}

func (v *validator) addf(path string, sentinel error, format string, args ...any) {
	v.add(path, fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...)))
}

// validate runs every check after the decode problems in pre. Checks of a
// path whose value failed to decode are dropped: the default left in its
// place says nothing about the file.
func (c *Config) validate(pre []problem, failed map[string]bool) error {
	v := &validator{c: c}
	v.log()
	adm := v.admin()
	listen := v.sip()
	v.media()
	v.sbc()
	v.bans()
	v.capture()
	v.pluginHost()
	v.plugins()
	v.appliance()
	v.network()
	v.conflicts(listen, adm)

	errs := make([]*FieldError, 0, len(pre)+len(v.list))
	for _, p := range pre {
		errs = append(errs, c.fieldError(p))
	}
	for _, p := range v.list {
		if !decodeFailed(failed, p.path) {
			errs = append(errs, c.fieldError(p))
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line) // ties keep the order of the checks
	})
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// decodeFailed reports whether path or one of its parents failed to decode.
func decodeFailed(failed map[string]bool, path string) bool {
	if failed[path] {
		return true
	}
	for _, p := range parents(path) {
		if failed[p] {
			return true
		}
	}
	return false
}

func (c *Config) fieldError(p problem) *FieldError {
	lines := c.index()
	line := lines[p.path]
	for _, a := range p.alt {
		if line == 0 {
			line = lines[a]
		}
	}
	if line == 0 {
		line = lines.nearest(p.path)
	}
	return &FieldError{File: c.file, Line: line, Path: p.path, Err: p.err}
}

func (v *validator) log() {
	l := v.c.Log
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, l.Level) {
		v.addf("log.level", ErrInvalid, "%q is not one of debug, info, warn, error", l.Level)
	}
	if !slices.Contains([]string{"text", "json"}, l.Format) {
		v.addf("log.format", ErrInvalid, "%q is not one of text, json", l.Format)
	}
}

// endpoint is a parsed listen address; a nil addrs slice means "any address".
type endpoint struct {
	addrs []netip.Addr
	port  int
}

// admin checks [admin] and returns its endpoint, or nil when disabled or bad.
func (v *validator) admin() *endpoint {
	a := v.c.Admin
	if a.FirmwareDir != "" && !filepath.IsAbs(a.FirmwareDir) {
		v.addf("admin.firmware_dir", ErrInvalid, "%q is not an absolute path", a.FirmwareDir)
	}
	v.intRange("admin.firmware_max_bytes", a.FirmwareMaxBytes, 1<<20, maxFirmwareMaxBytes)
	if a.Listen == "" {
		return nil
	}
	const path = "admin.listen"
	host, portText, err := net.SplitHostPort(a.Listen)
	if err != nil {
		v.add(path, fmt.Errorf("%w: %q is not host:port: %w", ErrInvalid, a.Listen, err))
		return nil
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		v.addf(path, ErrInvalid, "port %q is not a number", portText)
		return nil
	}
	if port < 1 || port > 65535 {
		v.addf(path, ErrOutOfRange, "port %d not in 1..65535", port)
		return nil
	}
	ep := &endpoint{port: port}
	loopback := false
	switch addr, err := netip.ParseAddr(host); {
	case host == "":
	case err == nil:
		addr = addr.Unmap()
		ep.addrs = []netip.Addr{addr}
		loopback = addr.IsLoopback()
	case strings.EqualFold(host, "localhost"):
		ep.addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
		loopback = true
	case !validHostname(host):
		v.addf(path, ErrInvalid, "host %q is neither an IP address nor a host name", host)
		return nil
	default:
		// A name may resolve to any of our addresses: treat it as "any"
		// when looking for port conflicts.
	}
	if !loopback && !a.AllowRemote {
		shown := host
		if shown == "" {
			shown = "every address"
		}
		v.addf(path, ErrInvalid, "%s is not a loopback address; set admin.allow_remote = true to serve the admin API remotely", shown)
	}
	v.adminToken(loopback)
	return ep
}

// sip checks [sip] and [sip.tls] and returns the usable listen addresses.
func (v *validator) sip() []netip.Addr {
	s := v.c.SIP
	switch {
	case s.FQDN == "":
		v.add("sip.fqdn", ErrRequired)
	case !validHostname(s.FQDN):
		v.addf("sip.fqdn", ErrInvalid, "%q is not a host name", s.FQDN)
	}
	if len(s.Listen) == 0 {
		v.addf("sip.listen", ErrRequired, "at least one IP address")
	}
	listen := v.listenAddrs()
	switch s.Mode {
	case ModeTCP, ModeTLS, ModeDual:
	default:
		v.addf("sip.mode", ErrInvalid, "%q is not one of tcp, tls, dual", s.Mode)
	}
	v.port("sip.tcp_port", s.TCPPort)
	v.port("sip.tls_port", s.TLSPort)
	v.intRange("sip.udp_buffer_bytes", s.UDPBufferBytes, 65536, 256<<20)
	v.intRange("sip.dscp", s.DSCP, 0, 63) // the six DSCP bits of the TOS byte (RFC 2474)
	v.durRange("sip.tcp_idle_timeout", s.TCPIdleTimeout, time.Second, 24*time.Hour)
	v.intRange("sip.max_connections", s.MaxConnections, 0, 1<<20)
	v.intRange("sip.max_connections_per_source", s.MaxConnectionsPerSource, 1, 1<<20)
	v.durRange("sip.tcp_write_timeout", s.TCPWriteTimeout, 10*time.Millisecond, time.Minute)
	if v.durRange("sip.retry_after", s.RetryAfter, time.Second, time.Hour) && s.RetryAfter.Duration%time.Second != 0 {
		v.addf("sip.retry_after", ErrInvalid, "%s is not a whole number of seconds", fmtDur(s.RetryAfter.Duration))
	}
	v.intRange("sip.ask_workers", s.AskWorkers, 1, 1024)
	v.intRange("sip.ask_queue", s.AskQueue, 1, 1_000_000)
	// Well inside Timer B (32 s), so the caller hears our 503, not its own timeout.
	v.durRange("sip.ask_timeout", s.AskTimeout, 10*time.Millisecond, 10*time.Second)
	v.tlsSettings()
	v.tlsFiles()
	return listen
}

// listenAddrs checks sip.listen and returns the addresses that are valid
// and do not overlap an earlier entry.
func (v *validator) listenAddrs() []netip.Addr {
	var out []netip.Addr
	var from []int
	for i, text := range v.c.SIP.Listen {
		path := indexKey("sip.listen", i)
		addr, err := netip.ParseAddr(text)
		if err != nil {
			v.addf(path, ErrInvalid, "%q is not an IP address", text)
			continue
		}
		addr = addr.Unmap()
		if j := slices.IndexFunc(out, func(o netip.Addr) bool { return overlap(o, addr) }); j >= 0 {
			prev := v.c.SIP.Listen[from[j]]
			if out[j] == addr {
				v.addf(path, ErrConflict, "%s is listed twice (also sip.listen[%d])", text, from[j])
			} else {
				v.addf(path, ErrConflict, "%s overlaps %s (sip.listen[%d]); binding both would fail", text, prev, from[j])
			}
			continue
		}
		out = append(out, addr)
		from = append(from, i)
	}
	return out
}

func (v *validator) port(path string, p int) bool {
	if p < 1 || p > 65535 {
		v.addf(path, ErrOutOfRange, "%d not in 1..65535", p)
		return false
	}
	return true
}

func (v *validator) intRange(path string, n, lo, hi int) bool {
	if n < lo || n > hi {
		v.addf(path, ErrOutOfRange, "%d not in %d..%d", n, lo, hi)
		return false
	}
	return true
}

// rate checks a calls-per-second limit: 0 (none) or a positive number.
func (v *validator) rate(path string, r float64) {
	if !(r >= 0 && r <= 100_000) { // NaN fails both
		v.addf(path, ErrOutOfRange, "%g not in 0..100000 calls/s", r)
	}
}

func (v *validator) durRange(path string, d Duration, lo, hi time.Duration) bool {
	if d.Duration < lo || d.Duration > hi {
		v.addf(path, ErrOutOfRange, "%s not in %s..%s", fmtDur(d.Duration), fmtDur(lo), fmtDur(hi))
		return false
	}
	return true
}

// fmtDur prints durations the way operators write them: 1h, not 1h0m0s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (v *validator) bans() {
	s := v.c.SIP
	v.intRange("sip.ban_threshold", s.BanThreshold, 0, 1_000_000)
	v.durRange("sip.ban_time", s.BanTime, time.Second, 24*time.Hour)
}

func (v *validator) sbc() {
	s := v.c.SBC
	v.intRange("sbc.max_calls", s.MaxCalls, 0, 1_000_000)
	v.rate("sbc.calls_per_second", s.CallsPerSecond)
	v.intRange("sbc.max_redirects", s.MaxRedirects, 1, 20)
	v.intRange("sbc.max_ended_calls", s.MaxEnded, 1, 10_000_000)
	v.durRange("sbc.ring_timeout", s.RingTimeout, time.Second, time.Hour)
	v.durRange("sbc.failover_timeout", s.FailoverTimeout, 100*time.Millisecond, 32*time.Second)
	if !slices.Contains([]string{"off", "crlf", "options"}, s.KeepAlive) {
		v.addf("sbc.keepalive", ErrInvalid, "%q is not one of off, crlf, options", s.KeepAlive)
	}
	v.durRange("sbc.keepalive_interval", s.KeepAliveInterval, time.Second, time.Hour)
	if s.CDRFile != "" {
		if dir := filepath.Dir(s.CDRFile); !isDir(dir) {
			v.addf("sbc.cdr_file", ErrInvalid, "directory %s does not exist", dir)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Peers)) {
		p := s.Peers[name]
		path := joinKey("sbc.peers", name)
		switch p.MediaSecurity {
		case "", MediaAsIs, MediaRTP, MediaSRTP, MediaBoth:
		default:
			v.addf(path+".media_security", ErrInvalid, "%q is not one of as-is, rtp, srtp, both", p.MediaSecurity)
		}
		if p.OptionsIntervalDown.Duration != 0 {
			v.durRange(path+".options_interval_down", p.OptionsIntervalDown, 100*time.Millisecond, time.Hour)
		}
		v.rate(path+".calls_per_second", p.CallsPerSecond)
		v.intRange(path+".options_up_after", p.OptionsUpAfter, 0, 100)
		v.intRange(path+".options_down_after", p.OptionsDownAfter, 0, 100)
		if !slices.Contains([]string{"", "handle_locally", "transparent", "rewrite"}, p.RedirectMode) {
			v.addf(path+".redirect_mode", ErrInvalid, "%q is not one of handle_locally, transparent, rewrite", p.RedirectMode)
		}
		if !slices.Contains([]string{"", "transparent", "handle_locally", "rewrite"}, p.ReferMode) {
			v.addf(path+".refer_mode", ErrInvalid, "%q is not one of transparent, handle_locally, rewrite", p.ReferMode)
		}
		v.headerRules(path+".header_rules", p.HeaderRules)
		for i, c := range p.Codecs {
			if !isCodecName(c) {
				v.addf(fmt.Sprintf("%s.codecs[%d]", path, i), ErrInvalid, "%q is no codec name (an SDP encoding name such as PCMA)", c)
			}
		}
		v.ptime(path+".ptime", p.Ptime, p.Codecs)
	}
}

// ptime checks a peer's packetisation (R-SBC-3): 0 (as offered) or
// 10..60 ms, the range of the media engine's re-packetiser; a G.729 packet
// is whole 10 ms frames, so a value between them needs codecs that allow
// only the sample codecs, whose packets split at any byte.
func (v *validator) ptime(path string, ms int, codecs []string) {
	if ms == 0 || !v.intRange(path, ms, 10, 60) || ms%10 == 0 {
		return
	}
	sampleOnly := len(codecs) > 0
	for _, c := range codecs {
		switch strings.ToUpper(c) {
		case "PCMU", "PCMA", "G722", "TELEPHONE-EVENT", "CN":
		default:
			sampleOnly = false
		}
	}
	if !sampleOnly {
		v.addf(path, ErrInvalid, "%d ms is not a whole number of G.729's 10 ms frames: use a multiple of 10, or limit codecs to PCMU, PCMA, G722", ms)
	}
}

// Bounds of header rules (R-SBC-10); the engine, core/internal/hdrrules,
// holds the same.
const (
	maxHeaderRules   = 64
	maxRulePattern   = 1024
	maxRuleValue     = 2048
	ruleOwnedHeaders = "via call-id i cseq contact m route record-route max-forwards content-type c content-length l"
)

// headerRules checks one peer's header rules: every field by itself, and
// no rule on a header the B2BUA writes itself (From and To only by their
// URI's user or host, which leaves the tags alone).
func (v *validator) headerRules(path string, rules []HeaderRule) {
	if len(rules) > maxHeaderRules {
		v.addf(path, ErrOutOfRange, "%d rules, at most %d", len(rules), maxHeaderRules)
	}
	owned := strings.Fields(ruleOwnedHeaders)
	for i, r := range rules {
		key := fmt.Sprintf("%s[%d]", path, i)
		bad := func(field string, sentinel error, format string, args ...any) {
			v.add(key+"."+field, fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...)), key)
		}
		if !slices.Contains([]string{"in", "out", "both"}, r.Direction) {
			bad("direction", ErrInvalid, "%q is not one of in, out, both", r.Direction)
		}
		if !slices.Contains([]string{"add", "remove", "replace", "set"}, r.Action) {
			bad("action", ErrInvalid, "%q is not one of add, remove, replace, set", r.Action)
		}
		if !slices.Contains([]string{"", "value", "user", "host"}, r.Part) {
			bad("part", ErrInvalid, "%q is not one of value, user, host", r.Part)
		}
		fromTo := strings.EqualFold(r.Header, "from") || strings.EqualFold(r.Header, "to") || r.Header == "f" || r.Header == "t"
		switch {
		case !isHeaderName(r.Header):
			bad("header", ErrInvalid, "%q is no header name", r.Header)
		case slices.Contains(owned, strings.ToLower(r.Header)):
			bad("header", ErrInvalid, "%s is written by the B2BUA itself (Via, Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards, Content-Type, Content-Length)", r.Header)
		case fromTo && (r.Action != "replace" || r.Part == "" || r.Part == "value"):
			bad("header", ErrInvalid, "%s carries the B2BUA's tag: only replace on its user or host", r.Header)
		}
		if r.TargetHeader != "" {
			switch {
			case r.Action != "add" && r.Action != "set":
				bad("target_header", ErrInvalid, "only add and set write another header")
			case !isHeaderName(r.TargetHeader):
				bad("target_header", ErrInvalid, "%q is no header name", r.TargetHeader)
			case slices.Contains(owned, strings.ToLower(r.TargetHeader)) || slices.Contains([]string{"from", "to", "f", "t"}, strings.ToLower(r.TargetHeader)):
				bad("target_header", ErrInvalid, "%s is written by the B2BUA itself", r.TargetHeader)
			}
		} else if (r.Action == "add" || r.Action == "set") && r.Part != "" && r.Part != "value" {
			bad("part", ErrInvalid, "add and set write whole values; part %q is for matching another header (target_header)", r.Part)
		}
		switch {
		case len(r.Match) > maxRulePattern:
			bad("match", ErrOutOfRange, "%d bytes, at most %d", len(r.Match), maxRulePattern)
		case r.Match != "":
			if _, err := regexp.Compile(r.Match); err != nil {
				bad("match", ErrInvalid, "%v", err)
			}
		case r.Action == "replace":
			bad("match", ErrRequired, "replace needs a match")
		}
		switch {
		case len(r.Value) > maxRuleValue:
			bad("value", ErrOutOfRange, "%d bytes, at most %d", len(r.Value), maxRuleValue)
		case strings.ContainsFunc(r.Value, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }):
			bad("value", ErrInvalid, "control characters would break the message")
		case r.Action == "remove" && r.Value != "":
			bad("value", ErrInvalid, "remove writes nothing")
		case (r.Action == "add" || r.Action == "set") && strings.TrimSpace(r.Value) == "":
			bad("value", ErrRequired, "%s needs a value", r.Action)
		}
	}
}

// isHeaderName reports whether s is an RFC 3261 token of at most 64 bytes.
func isHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.!%*_+`'~", c)) {
			return false
		}
	}
	return true
}

// isCodecName reports whether s can be an SDP rtpmap encoding name.
func isCodecName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func (v *validator) media() {
	m := v.c.Media
	if v.intRange("media.port_min", m.PortMin, 1024, 65534) && m.PortMin%2 != 0 {
		v.addf("media.port_min", ErrInvalid, "%d is odd; RTP uses even ports (RTCP = RTP+1)", m.PortMin)
	}
	if m.PortMax > 65535 {
		v.addf("media.port_max", ErrOutOfRange, "%d above 65535", m.PortMax)
	} else if m.PortMax <= m.PortMin {
		v.addf("media.port_max", ErrConflict, "%d is not above media.port_min %d", m.PortMax, m.PortMin)
	}
	v.intRange("media.workers", m.Workers, 0, 256)
	v.intRange("media.idle_pairs", m.IdlePairs, -1, 1<<15)
	v.durRange("media.latch_window", m.LatchWindow, 100*time.Millisecond, 5*time.Minute)
	if m.InactivityTimeout.Duration != 0 {
		v.durRange("media.inactivity_timeout", m.InactivityTimeout, time.Second, 24*time.Hour)
	}
	v.intRange("media.police_audio_pps", m.PoliceAudioPPS, 0, 1_000_000)
	v.intRange("media.police_audio_kbps", m.PoliceAudioKbps, 0, 10_000_000)
	v.intRange("media.police_video_pps", m.PoliceVideoPPS, 0, 1_000_000)
	v.intRange("media.police_video_kbps", m.PoliceVideoKbps, 0, 10_000_000)
	v.intRange("media.dscp", m.DSCP, 0, 63)
	v.intRange("media.dscp_video", m.DSCPVideo, 0, 63)
	switch m.FastPath {
	case "off", "auto", "tc":
	default:
		v.addf("media.fast_path", ErrInvalid, "%q: want off, auto or tc", m.FastPath)
	}
	switch m.SendPath {
	case "socket", "xdp":
	default:
		v.addf("media.send_path", ErrInvalid, "%q: want socket or xdp", m.SendPath)
	}
}

func (v *validator) pluginHost() {
	h := v.c.PluginHost
	if h.Dir == "" {
		v.add("plugin_host.dir", ErrRequired)
	}
	v.durRange("plugin_host.call_timeout", h.CallTimeout, time.Millisecond, time.Minute)
	v.durRange("plugin_host.start_timeout", h.StartTimeout, 100*time.Millisecond, 10*time.Minute)
	okMin := v.durRange("plugin_host.restart_backoff_min", h.RestartBackoffMin, time.Millisecond, time.Minute)
	okMax := v.durRange("plugin_host.restart_backoff_max", h.RestartBackoffMax, time.Millisecond, time.Hour)
	if okMin && okMax && h.RestartBackoffMax.Duration < h.RestartBackoffMin.Duration {
		v.addf("plugin_host.restart_backoff_max", ErrConflict, "%s is below plugin_host.restart_backoff_min %s",
			fmtDur(h.RestartBackoffMax.Duration), fmtDur(h.RestartBackoffMin.Duration))
	}
	okInterval := v.durRange("plugin_host.health_interval", h.HealthInterval, 10*time.Millisecond, time.Minute)
	okTimeout := v.durRange("plugin_host.health_timeout", h.HealthTimeout, time.Millisecond, time.Minute)
	if okInterval && okTimeout && h.HealthTimeout.Duration > h.HealthInterval.Duration {
		v.addf("plugin_host.health_timeout", ErrConflict, "%s is above plugin_host.health_interval %s; a probe must end before the next is due",
			fmtDur(h.HealthTimeout.Duration), fmtDur(h.HealthInterval.Duration))
	}
	v.durRange("plugin_host.drain_timeout", h.DrainTimeout, time.Millisecond, 10*time.Minute)
	if h.SHA256Sums != "" && h.Dir != "" && inDir(h.Dir, h.SHA256Sums) {
		v.addf("plugin_host.sha256sums", ErrInvalid, "%s is inside plugin_host.dir %s: a pin kept beside the binaries it pins protects nothing; keep it elsewhere or pin each plugin inline with sha256",
			h.SHA256Sums, h.Dir)
	}
}

// inDir reports whether path lies inside dir (or is dir), comparing the
// absolute paths and, where they exist, the paths with symlinks resolved.
func inDir(dir, path string) bool {
	within := func(dir, path string) bool {
		rel, err := filepath.Rel(dir, path)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	absDir, err1 := filepath.Abs(dir)
	absPath, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	if within(absDir, absPath) {
		return true
	}
	realDir, err1 := filepath.EvalSymlinks(absDir)
	realParent, err2 := filepath.EvalSymlinks(filepath.Dir(absPath))
	return err1 == nil && err2 == nil && within(realDir, filepath.Join(realParent, filepath.Base(absPath)))
}

var (
	pluginName   = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	instanceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

func (v *validator) plugins() {
	names := make([]string, 0, len(v.c.Plugins))
	for name := range v.c.Plugins {
		names = append(names, name)
	}
	// File order, so "more than one router" blames the later one.
	slices.SortFunc(names, func(a, b string) int {
		la, lb := v.c.Line(joinKey("plugins", a)), v.c.Line(joinKey("plugins", b))
		return cmp.Or(cmp.Compare(la, lb), strings.Compare(a, b))
	})
	var router string
	for _, name := range names {
		p := v.c.Plugins[name]
		path := joinKey("plugins", name)
		if !pluginName.MatchString(name) {
			v.addf(path, ErrInvalid, "instance name %q must match [a-z][a-z0-9_-]*", name)
		}
		switch p.Kind {
		case "":
			v.add(path+".kind", ErrRequired, path)
		case kind.Router:
			if router != "" {
				v.addf(path+".kind", ErrConflict, "a second router plugin; %s is already the router", joinKey("plugins", router))
			} else {
				router = name
			}
			if p.Instances != nil {
				v.addf(path+".instances", ErrInvalid, "a router plugin runs as one process; remove instances")
			}
		case kind.Worker, kind.Integration:
		default:
			v.addf(path+".kind", ErrInvalid, "%q is not one of router, worker, integration", p.Kind)
		}
		switch {
		case p.Binary == "":
			v.add(path+".binary", ErrRequired, path)
		case strings.ContainsAny(p.Binary, `/\`) || p.Binary == "." || p.Binary == "..":
			v.addf(path+".binary", ErrInvalid, "%q must be a file name inside plugin_host.dir, without a path", p.Binary)
		}
		switch {
		case p.SHA256 != "":
			if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
				v.addf(path+".sha256", ErrInvalid, "want 64 hex digits, got %q", p.SHA256)
			}
		case v.c.PluginHost.SHA256Sums == "":
			v.addf(path+".sha256", ErrRequired, "the binary must be pinned here or in plugin_host.sha256sums")
		}
		v.instances(path, p.Instances)
	}
}

// instances checks [plugins.<name>].instances: when set, at least one
// name, each unique and of the form [a-z0-9][a-z0-9_-]*.
func (v *validator) instances(path string, names []string) {
	if names == nil {
		return
	}
	if len(names) == 0 {
		v.addf(path+".instances", ErrInvalid, "empty; leave instances out for one process")
		return
	}
	seen := make(map[string]int, len(names))
	for i, n := range names {
		key := indexKey(path+".instances", i)
		if !instanceName.MatchString(n) {
			v.addf(key, ErrInvalid, "instance name %q must match [a-z0-9][a-z0-9_-]*", n)
			continue
		}
		if j, ok := seen[n]; ok {
			v.addf(key, ErrConflict, "%q is listed twice (also %s)", n, indexKey(path+".instances", j))
			continue
		}
		seen[n] = i
	}
}

// validHostname reports whether s is a DNS host name (not an IP address).
func validHostname(s string) bool {
	if _, err := netip.ParseAddr(strings.TrimSuffix(s, ".")); err == nil {
		return false
	}
	return hostname.ValidDNSName(s)
}
