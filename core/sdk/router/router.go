// Package router is the contract between the edge core and a Call Router
// plugin: the plugin publishes the topology (gateways and back-end pools)
// and decides, per inbound call, which pool answers it or why it is refused.
//
// The core owns the SIP data plane. It parses INVITEs, identifies the
// transport and the TLS peer, extracts the called-party candidates, and
// caches Route results by Call.Key so that a steady stream of calls does not
// cross the process boundary (DESIGN.md §2). Everything that must hold per
// call regardless of the cache — back-end health, MaxCallsAllowed, per-gateway
// call rate — is enforced by the core from the Topology.
package router

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// Router decides where the Call Router sends a call. Implementations must be
// safe for concurrent use and honour ctx cancellation.
type Router interface {
	base.Plugin

	// Topology returns the gateways and back-end pools of the current
	// configuration. The core calls it after every successful Configure and
	// drops its decision cache when Generation changes.
	Topology(ctx context.Context) (*Topology, error)

	// Route decides one call. It must be a pure function of call and the
	// current configuration: the core caches the result (a *Decision or a
	// *Rejection) under call.Key() until the topology generation changes or
	// the cache entry ages out. Any other error means "could not decide" and
	// is never cached.
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

// Call is what the core knows about an inbound INVITE. Every field except
// CallID is part of the cache key, so a Router may use any of them.
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

// Key returns the cache key of the call: every field that a decision may
// depend on, and nothing call-specific (not the Call-ID).
func (c *Call) Key() string {
	var b strings.Builder
	b.Grow(96)
	b.WriteString(string(c.Transport))
	b.WriteByte('|')
	b.WriteString(c.Source.String())
	for _, n := range c.PeerNames {
		b.WriteByte(',')
		b.WriteString(n)
	}
	b.WriteByte('|')
	b.WriteString(c.RequestURIUser)
	b.WriteByte('|')
	b.WriteString(c.ToUser)
	b.WriteByte('|')
	b.WriteString(c.FromUser)
	for _, d := range c.Diversion {
		b.WriteString("|d:")
		b.WriteString(d.User)
		b.WriteByte(';')
		b.WriteString(d.Reason)
	}
	for _, h := range c.HistoryInfo {
		b.WriteString("|h:")
		b.WriteString(h.Index)
		b.WriteByte(';')
		b.WriteString(h.User)
		b.WriteByte(';')
		b.WriteString(h.Cause)
	}
	return b.String()
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
	Pool     string  // back-end pool that must answer; must be in Topology.Pools
}

// Topology is what the core enforces and probes on the plugin's behalf.
type Topology struct {
	Generation uint64 // changes whenever the configuration behind it changes
	Gateways   []Gateway
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
	Addresses []netip.Addr // source addresses the peer sends from
	FQDN      string       // required name in the peer's TLS certificate
	Status    GatewayStatus

	// CallsPerSecond limits new calls from this peer; 0 = unlimited. The
	// core answers calls over the limit with 503 and Retry-After.
	CallsPerSecond float64
	// MaxConcurrentCalls limits calls this peer has in progress on the
	// appliance; 0 = unlimited.
	MaxConcurrentCalls int

	// Ping, when non-zero, asks the core to send OPTIONS to the peer at
	// this interval and record its reachability (R-HLTH-1).
	Ping          time.Duration
	PingTarget    string    // host:port the OPTIONS go to
	PingTransport Transport // transport of the OPTIONS
}

// Pool is a set of interchangeable back ends (UM services).
type Pool struct {
	Name     string
	Backends []Backend
}

// Backend is one UM service the Call Router can redirect to.
type Backend struct {
	Name    string
	Host    string // FQDN or IP written into the 302 Contact
	TCPPort int    // SIP/TCP port, normally 5062
	TLSPort int    // SIP/TLS port, normally 5063

	// MaxCallsAllowed is the back end's concurrent-call capacity (R-WK-3);
	// 0 = unlimited.
	MaxCallsAllowed int
	// Ping, when non-zero, makes the core probe the back end with OPTIONS
	// at this interval; an unreachable back end is skipped (R-HLTH-1,
	// R-CR-3). Zero means the back end is assumed healthy.
	Ping time.Duration
}
