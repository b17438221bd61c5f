// Package router is the contract between the edge core and a Call Router
// plugin: the plugin publishes a routing table (gateways, their hunt groups,
// dial plans with their numbering rules and mailboxes, back-end pools) that
// the core evaluates for every inbound call, and decides itself only the
// calls its table leaves to it.
//
// The core owns the SIP data plane (DESIGN.md §2). It parses INVITEs,
// identifies the transport and the TLS peer, extracts the called-party
// candidates and answers each call from the last table the plugin gave it
// with Decide, in-process and without a plugin call. Only a number the
// table marks as the plugin's to decide (DialPlan.Unlisted = AskPlugin)
// is sent to Route, off the SIP readers, through a bounded queue with a
// deadline. Everything that must hold per call — back-end health, the
// per-gateway call rate — is enforced by the core from the table.
package router

import (
	"context"
	"net/netip"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// Router decides where the Call Router sends a call. Implementations must be
// safe for concurrent use and honour ctx cancellation.
type Router interface {
	base.Plugin

	// Table returns the routing table of the current configuration. The
	// core calls it after every successful Configure and after a restart,
	// checks it with Compile and, if it is sound, answers calls from it.
	// Generation must change whenever the table's content changes.
	Table(ctx context.Context) (*Table, error)

	// Route decides one call that the table leaves to the plugin: a
	// well-formed number that a dial plan whose Unlisted is AskPlugin does
	// not list.
	// It returns a *Decision, or a *Rejection as the error; any other
	// error means "could not decide" and the core answers 503. The core
	// has identified the gateway and checked its status and rate already;
	// it overrides Decision.Gateway and DialPlan with what its table says.
	Route(ctx context.Context, call *Call) (*Decision, error)
}

// Transport is the SIP transport a request arrived on.
type Transport string

// Transports of the Call Router listeners.
const (
	UDP Transport = "udp"
	TCP Transport = "tcp"
	TLS Transport = "tls"
)

// Call is what the core knows about an inbound INVITE. User parts are
// %-decoded and may hold any bytes, including invalid UTF-8: the wire
// carries them as bytes.
type Call struct {
	CallID    string
	Transport Transport
	Source    netip.Addr // source IP of the request (peer identification, R-ID-1)
	PeerNames []string   // DNS names of a verified TLS client certificate (R-SEC-3)

	RequestURIUser string // user part of the Request-URI
	ToUser         string // user part of the To URI
	FromUser       string // user part of the From URI ("" when absent or anonymous)

	Diversion   []Diversion   // Diversion header values, top (most recent) first (RFC 5806)
	HistoryInfo []HistoryInfo // History-Info entries in index order (RFC 7044)
}

// Diversion is one Diversion header value.
type Diversion struct {
	User   string // user part of the diverting URI
	Reason string // reason parameter, e.g. "no-answer", "user-busy", "unconditional"
}

// HistoryInfo is one History-Info entry.
type HistoryInfo struct {
	Index string // the index parameter, e.g. "1.1"
	User  string // user part of the hi-targeted-to-uri
	Cause string // the cause URI parameter (RFC 4458), "" when absent
}

// Service says what the call reached (R-ID-4).
type Service string

// Services a call can be routed to.
const (
	CallAnswering    Service = "call-answering"    // a diverted call: leave a voice message
	SubscriberAccess Service = "subscriber-access" // the pilot/access number (Outlook Voice Access)
	DirectVoicemail  Service = "direct-voicemail"  // a user's own extension dialled directly
)

// Decision sends a call to a back-end pool.
type Decision struct {
	Gateway  string  // name of the gateway that sent the call
	DialPlan string  // dial plan that took the call
	Service  Service // what the call reached
	Called   string  // the number that identified the target (mailbox extension or pilot)
	Mailbox  string  // mailbox name; "" when the call reached no single mailbox
	Pool     string  // back-end pool that must answer; must be in Table.Pools
}

// Table is everything the core needs to answer calls without asking the
// plugin: who may call (gateways), which dial plan a call lands in (hunt
// groups), how its numbers are written and which mailbox each names (dial
// plans), and where the answer is (pools). Compile checks it and indexes it
// for the per-call path.
type Table struct {
	Generation uint64 // changes whenever the content changes
	Gateways   []Gateway
	DialPlans  []DialPlan
	Pools      []Pool
}

// GatewayStatus is the Exchange UM IP gateway status (R-ID-2).
type GatewayStatus string

// Gateway statuses.
const (
	GatewayEnabled    GatewayStatus = "Enabled"
	GatewayDisabled   GatewayStatus = "Disabled"
	GatewayNoNewCalls GatewayStatus = "NoNewCalls"
)

// Gateway is a UM IP gateway: one SIP peer.
type Gateway struct {
	Name      string
	Addresses []netip.Addr // source addresses the peer sends from (UDP and TCP)
	FQDN      string       // name in the peer's TLS certificate (TLS)
	Status    GatewayStatus

	// HuntGroups map the called number (the pilot) to a dial plan; the
	// one with an empty Pilot, if any, takes every other number.
	HuntGroups []HuntGroup

	// CallsPerSecond limits new calls from this peer; 0 = unlimited. The
	// core answers calls over the limit with 503 and Retry-After.
	CallsPerSecond float64
	// MaxConcurrentCalls limits calls this peer has in progress on the
	// appliance; 0 = unlimited. Enforced where the core holds whole calls.
	MaxConcurrentCalls int

	// Ping, when non-zero, asks the core to send OPTIONS to the peer at
	// this interval and record its reachability (R-HLTH-1).
	Ping          time.Duration
	PingTarget    string    // host:port the OPTIONS go to
	PingTransport Transport // transport of the OPTIONS
}

// HuntGroup sends the calls of one gateway for one pilot number to a dial
// plan (R-ID-3). Pilots are compared without regard to case.
type HuntGroup struct {
	Pilot    string // "" = catch-all
	DialPlan string // name of a Table.DialPlans entry
}

// URIType is how a dial plan writes its numbers (Exchange UMUriType, R-ID-5).
type URIType string

// URI types.
const (
	TelExtn URIType = "TelExtn" // exactly ExtensionDigits ASCII digits
	E164    URIType = "E164"    // "+" and 1 to 15 digits
	SIPName URIType = "SipName" // a SIP user part, compared without regard to case
)

// Security is a dial plan's VoIP security (R-SEC-1).
type Security string

// Security settings; SIPSecured and Secured need SIP over mutual TLS.
const (
	Unsecured  Security = "Unsecured"
	SIPSecured Security = "SIPSecured"
	Secured    Security = "Secured"
)

// Unlisted says what happens to a well-formed number that names no
// mailbox and no access number of the dial plan.
type Unlisted string

// Unlisted actions.
const (
	RejectUnlisted Unlisted = "reject"     // 404 unknown-number, decided in the core
	AskPlugin      Unlisted = "ask-plugin" // Route decides, e.g. from a directory too large to publish
)

// DialPlan is a UM dial plan: its numbering rules and the numbers it knows.
type DialPlan struct {
	Name            string
	URIType         URIType
	ExtensionDigits int // TelExtn only: the length of every extension, 1..20
	Security        Security
	Pool            string   // pool for subscriber access, and for mailboxes without their own
	AccessNumbers   []string // subscriber-access (pilot) numbers, compared like Mailbox.Number
	Mailboxes       []Mailbox
	Unlisted        Unlisted // "" = RejectUnlisted
}

// Mailbox is one number of a dial plan and the mailbox it reaches. A
// mailbox with several extensions has one entry for each.
type Mailbox struct {
	Number string // in the plan's URIType: digits, "+digits" or a SIP user part
	Name   string
	Pool   string // "" = the dial plan's pool
}

// Pool is a set of interchangeable back ends (UM services, or any SIP peer
// the appliance fronts as an SBC).
type Pool struct {
	Name     string
	Action   Action // what the core does with a call routed here
	Backends []Backend
}

// Action is how the core hands a call to a pool.
type Action string

// Actions. The zero value is Redirect.
const (
	// Redirect answers the caller with 302 to the chosen back end: the
	// Exchange way; the Call Router never sees the call again.
	Redirect Action = "redirect"
	// Proxy runs the call as a B2BUA: the core places a call of its own to
	// the back end, follows its 3xx, anchors the media and hides each side
	// from the other. For peers that cannot follow a 302, sit behind NAT,
	// or speak only UDP or plain RTP.
	Proxy Action = "proxy"
)

// Backend is one UM service the Call Router can redirect to.
type Backend struct {
	Name    string
	Host    string // FQDN or IP written into the 302 Contact
	TCPPort int    // SIP/TCP port, normally 5062
	TLSPort int    // SIP/TLS port, normally 5063
	// UDPPort is the SIP/UDP port; 0 = none. Only a proxy pool uses it:
	// a 302 never sends a gateway to UDP (UM back ends listen on TCP/TLS),
	// while an SBC may front a trunk that speaks only UDP.
	UDPPort int

	// MaxCallsAllowed is the back end's concurrent-call capacity (R-WK-3);
	// 0 = unlimited.
	MaxCallsAllowed int
	// Ping, when non-zero, makes the core probe the back end with OPTIONS
	// at this interval; an unreachable back end is skipped (R-HLTH-1,
	// R-CR-3). Zero means the back end is assumed healthy.
	Ping time.Duration
}
