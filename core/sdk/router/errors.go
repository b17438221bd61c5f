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
// unknown rejection reason, an empty response).
var ErrContract = errors.New("router plugin broke the contract")

// ErrAskPlugin is what Decide returns for a call its table leaves to the
// plugin's Route (DialPlan.Unlisted = AskPlugin).
var ErrAskPlugin = errors.New("router: the table leaves this call to the plugin")

// ErrBadTable means Compile refused a table; the core keeps the last good one.
var ErrBadTable = errors.New("router: bad routing table")

// Number format errors (number.go). They end up in Rejection.Detail and in
// settings problems, so their text is written for operators.
var (
	// ErrEmptyNumber means the number is empty.
	ErrEmptyNumber = errors.New("empty number")
	// ErrNotDigits means a TelExtn number holds something other than digits.
	ErrNotDigits = errors.New("not all digits")
	// ErrWrongLength means a TelExtn number has the wrong number of digits.
	ErrWrongLength = errors.New("wrong number of digits")
	// ErrNotE164 means an E164 number is not "+" followed by 1 to 15 digits.
	ErrNotE164 = errors.New("not an E.164 number")
	// ErrNotSIPUser means a SipName user part is not valid UTF-8 or holds spaces or control characters.
	ErrNotSIPUser = errors.New("not a SIP user part")
	// ErrURIType means the dial plan's URI type is none of TelExtn, E164, SipName.
	ErrURIType = errors.New("unknown uri type")
)

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
