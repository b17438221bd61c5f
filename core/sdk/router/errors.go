package router

import (
	"errors"
	"fmt"
)

// Rejection reasons. Each is a stable reason code (R-ERR-7) that the core
// maps to one SIP status.
var (
	// ErrUnknownPeer means the source is no configured gateway (403, R-ERR-1).
	ErrUnknownPeer = errors.New("unknown-peer")
	// ErrGatewayDisabled means the gateway's status is Disabled (403, R-ERR-2).
	ErrGatewayDisabled = errors.New("gateway-disabled")
	// ErrGatewayDraining means the gateway's status is NoNewCalls (503 + Retry-After, R-ERR-2).
	ErrGatewayDraining = errors.New("gateway-draining")
	// ErrNoDialPlan means no hunt group of the gateway matches the called number (403, R-ERR-2).
	ErrNoDialPlan = errors.New("no-dial-plan")
	// ErrUnknownNumber means the called number is no mailbox or pilot of the dial plan (404, R-ERR-5).
	ErrUnknownNumber = errors.New("unknown-number")
	// ErrBadNumber means a number does not fit the dial plan's URI type or length (404, R-ID-5).
	ErrBadNumber = errors.New("bad-number")
	// ErrSecurityMismatch means the transport does not meet the dial plan's security (488, R-ERR-6).
	ErrSecurityMismatch = errors.New("security-mismatch")
)

// ErrContract means a router plugin answered outside the contract (an
// unknown rejection reason, an empty response). It is never cached.
var ErrContract = errors.New("router plugin broke the contract")

// Reasons lists every rejection reason, in a stable order.
var Reasons = []error{
	ErrUnknownPeer, ErrGatewayDisabled, ErrGatewayDraining, ErrNoDialPlan,
	ErrUnknownNumber, ErrBadNumber, ErrSecurityMismatch,
}

// Rejection is a decision to refuse a call. Route returns it as its error.
type Rejection struct {
	Reason   error  // one of Reasons
	Gateway  string // "" when the peer is unknown
	DialPlan string // "" when none was selected
	Detail   string // human-readable, e.g. "extension 12345 has 5 digits, dial plan lab wants 4"
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("router: rejected (%v): %s", r.Reason, r.Detail)
}

func (r *Rejection) Unwrap() error { return r.Reason }

// ReasonByName returns the reason whose text is name, or nil.
func ReasonByName(name string) error {
	for _, r := range Reasons {
		if r.Error() == name {
			return r
		}
	}
	return nil
}
