// Package config loads and validates edged's TOML configuration file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/kind"
)

// Config is the whole edged TOML file. Field tags are the TOML keys, verbatim.
type Config struct {
	Log        Log               `toml:"log"`
	Admin      Admin             `toml:"admin"`
	SIP        SIP               `toml:"sip"`
	Media      Media             `toml:"media"`
	SBC        SBC               `toml:"sbc"`
	Capture    Capture           `toml:"capture"`
	PluginHost PluginHost        `toml:"plugin_host"`
	Plugins    map[string]Plugin `toml:"plugins"` // key = plugin instance name
	Appliance  Appliance         `toml:"appliance"`
	Network    Network           `toml:"network"`

	file string // name given to Parse, for FieldError.File
	text *text  // the file's bytes and, while needed, its line index; nil when not parsed from text
}

// Log configures edged's own log output.
type Log struct {
	Level  string `toml:"level"`  // debug|info|warn|error
	Format string `toml:"format"` // text|json
}

// Admin configures the admin HTTP server (health, status, metrics, reload).
type Admin struct {
	Listen      string `toml:"listen"`       // host:port; "" disables the server
	AllowRemote bool   `toml:"allow_remote"` // permit a non-loopback Listen
	// TokenFile holds the bearer token that POST /reload and other mutating
	// calls must carry; required when Listen is not loopback-only. GET and
	// PUT /config and POST /firmware need it on loopback too.
	TokenFile string `toml:"token_file"`
	// FirmwareDir turns on POST /firmware, the upload of a signed update
	// bundle: the body is spooled into this directory (on the appliance
	// the data partition, /data/firmware), verified, and installed into
	// the inactive slot. "" = no upload. The upload needs the bearer
	// token of TokenFile even on a loopback-only listener.
	FirmwareDir string `toml:"firmware_dir"`
	// FirmwareMaxBytes bounds an uploaded bundle.
	FirmwareMaxBytes int `toml:"firmware_max_bytes"`
}

// Firmware upload size bounds: the default holds the arm64 bundle (a
// 59 MB kernel and the root) with room to grow.
const (
	DefaultFirmwareMaxBytes = 128 << 20
	maxFirmwareMaxBytes     = 1 << 30
)

// Mode is the SIP startup mode of um-spec R-SEC-2.
type Mode string

// The startup modes.
const (
	ModeTCP  Mode = "tcp"  // UDP (if enabled) and TCP on tcp_port
	ModeTLS  Mode = "tls"  // TLS on tls_port only
	ModeDual Mode = "dual" // both of the above
)

// UsesTCP reports whether the mode listens on the plain tcp_port.
func (m Mode) UsesTCP() bool { return m == ModeTCP || m == ModeDual }

// UsesTLS reports whether the mode listens on the TLS tls_port.
func (m Mode) UsesTLS() bool { return m == ModeTLS || m == ModeDual }

// SIP configures the Call Router's SIP listeners.
type SIP struct {
	FQDN           string   `toml:"fqdn"`             // our own SIP identity and TLS certificate name
	Listen         []string `toml:"listen"`           // IP literals to bind
	Mode           Mode     `toml:"mode"`             // tcp|tls|dual
	UDP            bool     `toml:"udp"`              // with tcp|dual, also UDP on tcp_port
	TCPPort        int      `toml:"tcp_port"`         // plain SIP port (UDP and TCP)
	TLSPort        int      `toml:"tls_port"`         // SIP over TLS port
	UDPBufferBytes int      `toml:"udp_buffer_bytes"` // SO_RCVBUF/SO_SNDBUF for UDP sockets
	DSCP           int      `toml:"dscp"`             // DSCP of what the SIP sockets send, 0..63; 0 = unmarked
	TCPIdleTimeout Duration `toml:"tcp_idle_timeout"` // close idle TCP/TLS connections after this
	RetryAfter     Duration `toml:"retry_after"`      // Retry-After of a 503, whole seconds
	AskWorkers     int      `toml:"ask_workers"`      // goroutines that put calls the routing table leaves open to the router plugin
	AskQueue       int      `toml:"ask_queue"`        // such calls waiting for a worker at most; more get 503 at once
	AskTimeout     Duration `toml:"ask_timeout"`      // deadline of such a call, queue time included; then 503
	TLS            TLS      `toml:"tls"`

	// TCP and TLS connections, all listeners together (issue 5: a flood
	// must not lock gateways out nor take the admin API's descriptors).
	MaxConnections          int      `toml:"max_connections"`            // 0 = RLIMIT_NOFILE less max(256, 10 %) kept for the rest
	MaxConnectionsPerSource int      `toml:"max_connections_per_source"` // per source address; an IPv6 source counts by its /64
	TCPWriteTimeout         Duration `toml:"tcp_write_timeout"`          // a peer that takes no answer within it is dropped
	// A source that is no configured peer with more than BanThreshold
	// requests refused within 10 s is banned for BanTime: its messages are
	// dropped unread (R-SBC-8). 0 = no ban list.
	BanThreshold int      `toml:"ban_threshold"`
	BanTime      Duration `toml:"ban_time"`
}

// TLS configures the SIP TLS listener and mutual TLS (um-spec R-SEC-3, R-SEC-6).
type TLS struct {
	Cert         string   `toml:"cert"`          // PEM certificate chain file
	Key          string   `toml:"key"`           // PEM private key file
	ClientCA     string   `toml:"client_ca"`     // PEM CA bundle for peers' client certificates
	MinVersion   string   `toml:"min_version"`   // "1.2"|"1.3"
	CipherSuites []string `toml:"cipher_suites"` // crypto/tls names; empty = Go defaults
}

// Media configures the media engine: its RTP/RTCP port range, its event-loop
// workers, latching and the inactivity timeout.
type Media struct {
	PortMin           int      `toml:"port_min"`           // first RTP port, even
	PortMax           int      `toml:"port_max"`           // last port of the range
	Workers           int      `toml:"workers"`            // event-loop workers; 0 = GOMAXPROCS
	LatchWindow       Duration `toml:"latch_window"`       // how long after each answer a leg learns its peer's address
	InactivityTimeout Duration `toml:"inactivity_timeout"` // no packet from either side this long ends the call; 0 = off
	// IdlePairs bounds the RTP/RTCP pairs kept bound for the next call
	// after theirs ended (core/internal/media, pairpool.go: ~5.6 KiB of
	// kernel memory and two descriptors each); 0 = RLIMIT_NOFILE/8 (a
	// quarter of the descriptors, two a pair), at most the range's and
	// 16,384; -1 = none.
	IdlePairs int `toml:"idle_pairs"`
	// FastPath is the kernel fast path for latched legs that need no
	// payload work (eBPF at TC ingress): "off", "auto" (on where the kernel
	// allows, else userspace with one log line) or "tc" (refuse to start
	// without it).
	FastPath string `toml:"fast_path"`
	// SendPath is how the media engine sends what userspace relays:
	// "socket" (each leg's UDP socket) or "xdp" (a latched leg's
	// datagrams, IPv4 or IPv6 except to a link-local peer, through an
	// AF_XDP socket on the egress interface, at about a third of the CPU
	// per packet; they bypass the qdisc,
	// netfilter's OUTPUT and POSTROUTING hooks and tcpdump on this host:
	// core/internal/media/doc.go, "Send path").
	SendPath string `toml:"send_path"`
	// Media policing (R-SBC-8): what the peer of a leg may send, per
	// stream and direction, in packets/s and kbit/s (UDP payload); more is
	// dropped and counted (LegStats.Policed), RTCP gets a quarter of the
	// stream's caps in its own bucket, the burst is one second. 0 = no
	// cap. Audio caps cover T.38 fax too.
	PoliceAudioPPS  int `toml:"police_audio_pps"`
	PoliceAudioKbps int `toml:"police_audio_kbps"`
	PoliceVideoPPS  int `toml:"police_video_pps"`
	PoliceVideoKbps int `toml:"police_video_kbps"`
	// DSCP and DSCPVideo are the code points (RFC 2474, 0..63) what the
	// media engine sends is marked with: audio and T.38 fax, and video
	// streams; on every send path (sockets, XDP, the kernel fast path),
	// whatever the peer marked. 0 = unmarked.
	DSCP      int `toml:"dscp"`
	DSCPVideo int `toml:"dscp_video"`
}

// SBC configures the B2BUA that runs the calls of proxy pools (a router
// pool with action = "proxy").
type SBC struct {
	MaxCalls int `toml:"max_calls"` // calls at once through the B2BUA, all gateways; 0 = unlimited (bounded by the media ports)
	// CallsPerSecond bounds new calls through the B2BUA, all gateways
	// (R-SBC-8); more get 503 with Retry-After. 0 = unlimited.
	CallsPerSecond float64 `toml:"calls_per_second"`
	MaxRedirects   int     `toml:"max_redirects"` // 3xx of a back end followed per call
	// MaxEnded bounds the ended calls kept to answer their late
	// retransmissions (64×T1 each, ~1.5 KiB): at it the oldest is
	// forgotten early. The default, 200,000 (~300 MiB), is what 6,000
	// calls/s leave.
	MaxEnded    int      `toml:"max_ended_calls"`
	RingTimeout Duration `toml:"ring_timeout"` // a back end that rings longer is cancelled (RFC 3261 Timer C)
	// FailoverTimeout: a back end that leaves an INVITE unanswered this
	// long loses the call to the pool's next back end.
	FailoverTimeout Duration `toml:"failover_timeout"`
	// KeepAlive keeps a UDP caller's NAT binding open during its call:
	// "crlf", "options" (in-dialog OPTIONS; a caller that does not answer
	// or has lost the call is hung up) or "off"; every KeepAliveInterval.
	KeepAlive         string   `toml:"keepalive"`
	KeepAliveInterval Duration `toml:"keepalive_interval"`
	CDRFile           string   `toml:"cdr_file"` // call detail records, JSON lines; "" = none
	// Peers are media profiles by the name of a router gateway (the
	// caller's leg) or pool (the back end's leg).
	Peers map[string]SBCPeer `toml:"peers"`
}

// MediaSecurity is a leg's media security (R-SBC-6).
type MediaSecurity string

// The media security modes.
const (
	MediaAsIs MediaSecurity = "as-is" // what the other leg does: SRTP passed through, or RTP
	MediaRTP  MediaSecurity = "rtp"   // Not secured: plain RTP only
	MediaSRTP MediaSecurity = "srtp"  // Secured only: SRTP required
	MediaBoth MediaSecurity = "both"  // SRTP offered, either accepted
)

// SBCPeer is the media profile of one leg.
type SBCPeer struct {
	MediaSecurity MediaSecurity `toml:"media_security"` // as-is|rtp|srtp|both; "" = as-is, or srtp towards a Secured dial plan's pool
	Codecs        []string      `toml:"codecs"`         // allowed codecs in preference order, e.g. ["PCMA", "PCMU"]; empty = as offered
	DropDTMF      bool          `toml:"drop_dtmf"`      // strip telephone-event (RFC 4733) from this leg's SDP
	// Ptime is the packetisation this leg's peer gets, in ms (R-SBC-3):
	// the SDP sent to it asks for a=ptime:<ptime>, and the media engine
	// re-packetises PCMU, PCMA, G722 and G729 from the other leg to it
	// (AudioCodes' "packetization time" per coder group). 0 = as offered;
	// else 10..60, a multiple of 10 (G.729's 10 ms frame) unless codecs
	// allows sample codecs only (PCMU, PCMA, G722).
	Ptime int `toml:"ptime"`
	// Early183, for a calling peer: provisional answers with SDP reach it
	// as 183 only (a 180 as 180 without SDP, then 183): UCMA peers such as
	// Exchange UM lose the media of SDP in a 180 (R-SBC-9).
	Early183 bool `toml:"early_183"`
	// CallsPerSecond bounds the new calls from this gateway, or to this
	// pool, through the B2BUA (R-SBC-8); 0 = unlimited. (The router's
	// calls_per_second of a gateway holds too, for every call.)
	CallsPerSecond float64 `toml:"calls_per_second"`
	// OPTIONS keep-alive of the peer (R-SBC-6): of a gateway's probe, or
	// of the probes of a pool's back ends. The router's options_interval
	// turns probing on and is the interval while the peer is up;
	// OptionsIntervalDown is the interval while it is down (0 = the
	// same); a down peer is up again after OptionsUpAfter answers in a
	// row, an up one down after OptionsDownAfter failures in a row (0 =
	// 1 and 2). Any answer but 5xx counts: a 404 says the peer is alive.
	OptionsIntervalDown Duration `toml:"options_interval_down"`
	OptionsUpAfter      int      `toml:"options_up_after"`
	OptionsDownAfter    int      `toml:"options_down_after"`
	// RedirectMode, for a calling peer, is what a back end's 3xx does to
	// its calls (R-SBC-7): "handle_locally" (the SBC follows it, on the
	// back end's own host only; the default), "transparent" (relayed with
	// the back end's Contact as it is: the caller learns the internal
	// address) or "rewrite" (relayed with the Contact rewritten onto the
	// SBC, its user a signed marker valid for one minute that the SBC
	// routes back to the original target).
	RedirectMode string `toml:"redirect_mode"`
	// ReferMode, for a calling peer, is what a REFER from the back end
	// does to its calls (R-SBC-7, R-ID-8): "transparent" (passed to the
	// caller; the default) or "handle_locally" (the SBC answers it,
	// calls the Refer-To target itself — a back end or gateway the
	// routing knows, else 403 — and moves the caller's media there with
	// a re-INVITE: the caller never sees the REFER) or "rewrite"
	// (passed to the caller with the Refer-To rewritten onto the SBC, its
	// user a signed marker valid for one minute and for the caller's
	// address only, that the SBC routes to the original target — the
	// same targets as handle_locally, else 403; an attended transfer,
	// Refer-To with Replaces, gets 501). For a pool, it is what a REFER
	// from the caller does to calls to the pool, the same way round:
	// handle_locally moves the back end's media to the target, which
	// replaces the caller; the back end never sees it; rewrite passes it
	// to the back end with the Refer-To on the SBC.
	ReferMode string `toml:"refer_mode"`
	// HeaderRules rewrite the headers of the messages sent to or received
	// from this peer (R-SBC-10), in order; at most 64.
	HeaderRules []HeaderRule `toml:"header_rules"`
}

// HeaderRule is one header manipulation rule ([[sbc.peers.<name>.header_rules]]).
type HeaderRule struct {
	Direction    string `toml:"direction"`     // in (received from the peer) | out (sent to it) | both
	Header       string `toml:"header"`        // the header matched, e.g. "Diversion"
	Part         string `toml:"part"`          // value | user | host (of its URI); "" = value
	Match        string `toml:"match"`         // Go regexp (RE2) on the part; "" = every instance
	Action       string `toml:"action"`        // add | remove | replace | set
	Value        string `toml:"value"`         // what add, replace and set write; $1 and ${name} expand capture groups
	TargetHeader string `toml:"target_header"` // the header add and set write; "" = header
}

// PluginHost configures how plugin binaries are found, pinned and run.
type PluginHost struct {
	Dir               string   `toml:"dir"`                 // plugin binary directory
	SHA256Sums        string   `toml:"sha256sums"`          // optional sha256sum-format pin file, outside dir
	CallTimeout       Duration `toml:"call_timeout"`        // deadline of each plugin call
	StartTimeout      Duration `toml:"start_timeout"`       // deadline for a plugin to start
	RestartBackoffMin Duration `toml:"restart_backoff_min"` // first restart delay after a crash
	RestartBackoffMax Duration `toml:"restart_backoff_max"` // restart delay cap
	HealthInterval    Duration `toml:"health_interval"`     // pause between liveness probes of a plugin
	HealthTimeout     Duration `toml:"health_timeout"`      // deadline of one liveness probe
	DrainTimeout      Duration `toml:"drain_timeout"`       // how long a plugin may finish its work before it is stopped
}

// Plugin is one [plugins.<name>] instance.
type Plugin struct {
	Kind      kind.Kind  `toml:"kind"`      // router|worker|integration
	Binary    string     `toml:"binary"`    // file name inside plugin_host.dir
	SHA256    string     `toml:"sha256"`    // hex pin; "" = pinned by plugin_host.sha256sums
	Instances []string   `toml:"instances"` // run as one process per name ("<name>/<instance>"); empty = one process
	Settings  RawSection `toml:"settings"`  // the plugin's own table, validated by the plugin
}

// Duration is a time.Duration written in TOML as a Go duration string such
// as "30s" or "500ms".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("parse duration: %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// RawSection keeps a plugin's settings table opaque to the core: it holds the
// table re-encoded as TOML, ready for the plugin's Configure. Because it
// implements toml.Unmarshaler, every key under it counts as decoded.
type RawSection struct{ TOML []byte }

// errNotTable is what a settings key holding no table gets.
var errNotTable = errors.New("want a table")

// UnmarshalTOML re-encodes a decoded TOML table.
func (r *RawSection) UnmarshalTOML(v any) error {
	tbl, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%w, got %s", errNotTable, tomlType(v))
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(tbl); err != nil {
		return fmt.Errorf("re-encode settings: %w", err)
	}
	r.TOML = buf.Bytes()
	return nil
}

// Default returns the built-in configuration. It is valid except for what
// only a site can supply: the default mode "dual" needs sip.tls certificates.
func Default() Config {
	return Config{
		Log:   Log{Level: "info", Format: "text"},
		Admin: Admin{Listen: "127.0.0.1:9060", FirmwareMaxBytes: DefaultFirmwareMaxBytes},
		SIP: SIP{
			FQDN:           "umedge.local",
			Listen:         []string{"127.0.0.1", "::1"},
			Mode:           ModeDual,
			UDP:            true,
			TCPPort:        5060,
			TLSPort:        5061,
			UDPBufferBytes: 8 << 20,
			// CS3: the class that deployed PBX and switch QoS policies
			// match for call signalling (Cisco's and Microsoft's
			// guides), though RFC 4594 gives signalling CS5.
			DSCP:           24,
			TCPIdleTimeout: Duration{5 * time.Minute},
			RetryAfter:     Duration{30 * time.Second},
			AskWorkers:     16,
			AskQueue:       1024,
			AskTimeout:     Duration{2 * time.Second},
			TLS:            TLS{MinVersion: "1.2", CipherSuites: []string{}},

			MaxConnectionsPerSource: 64,
			TCPWriteTimeout:         Duration{2 * time.Second},
			BanThreshold:            200,
			BanTime:                 Duration{10 * time.Minute},
		},
		Media: Media{
			PortMin: 16384, PortMax: 32767,
			// Ten seconds covers the slowest first packet seen in practice
			// (a gateway that starts media only after its own ring-back
			// or an ICE check round) while keeping the time in which a
			// stranger could take over a plain-RTP leg short.
			LatchWindow:       Duration{10 * time.Second},
			InactivityTimeout: Duration{60 * time.Second},
			FastPath:          "auto",
			SendPath:          "socket",
			// Caps no real call reaches, about twice the most it sends:
			// audio at 10 ms ptime is 100 packets/s, 200 with RFC 4733
			// events beside it; Opus at its 510 kbit/s maximum is 520
			// kbit/s of UDP payload (G.711 and G.722: 138, 146 as SRTP);
			// T.38 at 14.4 kbit/s with redundancy stays under 150 kbit/s
			// and 100 packets/s. 1080p video sends 2-8 Mbit/s in
			// 1,200-byte packets (up to ~830 packets/s), half again with
			// RTX/FEC; key frames come as bursts the one-second burst
			// takes.
			PoliceAudioPPS: 400, PoliceAudioKbps: 1_024,
			PoliceVideoPPS: 3_000, PoliceVideoKbps: 20_000,
			// EF for voice and AF41 for video (RFC 4594's telephony and
			// multimedia conferencing; what Microsoft's and Cisco's QoS
			// policies match).
			DSCP: 46, DSCPVideo: 34,
		},
		SBC: SBC{MaxCalls: 2000, MaxRedirects: 5, MaxEnded: 200_000, RingTimeout: Duration{3 * time.Minute}, FailoverTimeout: Duration{4 * time.Second},
			KeepAlive: "crlf", KeepAliveInterval: Duration{30 * time.Second},
			Peers: map[string]SBCPeer{}},
		Capture: Capture{HEPTransport: "udp", HEPID: 1, HEPQueue: 8192},
		PluginHost: PluginHost{
			Dir:               "bin/plugins",
			CallTimeout:       Duration{500 * time.Millisecond},
			StartTimeout:      Duration{10 * time.Second},
			RestartBackoffMin: Duration{50 * time.Millisecond},
			RestartBackoffMax: Duration{30 * time.Second},
			HealthInterval:    Duration{time.Second},
			HealthTimeout:     Duration{500 * time.Millisecond},
			DrainTimeout:      Duration{5 * time.Second},
		},
		Plugins:   map[string]Plugin{},
		Appliance: Appliance{Firewall: true, Watchdog: DefaultWatchdog},
		Network:   Network{Interfaces: map[string]Interface{}},
	}
}

// File is the name the configuration was parsed from; "" for Default().
func (c *Config) File() string { return c.file }

// Line returns the 1-based line where path is set in the parsed file, or 0
// when the file does not mention it. Paths use dots between keys, quote keys
// that are not bare (mailboxes."a.b"), and index arrays of tables (x.y[0].z).
func (c *Config) Line(path string) int { return c.index()[path] }

// Problem builds a *FieldError for path with File and Line filled in. When
// the file does not mention path itself, the line of its nearest enclosing
// key or table is used. The host uses it for problems a plugin reports in
// its settings, e.g. "plugins.umrouter.settings.gateways.lab.status".
func (c *Config) Problem(path string, err error) *FieldError {
	return &FieldError{File: c.file, Line: c.index().nearest(path), Path: path, Err: err}
}
