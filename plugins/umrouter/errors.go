package main

import "errors"

var (
	// errNotConfigured means Route or Topology ran before a successful
	// Configure; the core treats it as "could not decide" and never caches it.
	errNotConfigured = errors.New("umrouter: not configured")
	// errNilCall means Route was handed no call.
	errNilCall = errors.New("umrouter: nil call")
)

// Number format errors (number.go). They end up in Rejection.Detail and in
// settings problems, so their text is written for operators.
var (
	// errEmptyNumber means the number is empty.
	errEmptyNumber = errors.New("empty number")
	// errNotDigits means a TelExtn number holds something other than digits.
	errNotDigits = errors.New("not all digits")
	// errWrongLength means a TelExtn number has the wrong number of digits.
	errWrongLength = errors.New("wrong number of digits")
	// errNotE164 means an E164 number is not "+" followed by 1 to 15 digits.
	errNotE164 = errors.New("not an E.164 number")
	// errNotSIPUser means a SipName user part holds spaces or control characters.
	errNotSIPUser = errors.New("not a SIP user part")
	// errURIType means the dial plan's URI type is none of TelExtn, E164, SipName.
	errURIType = errors.New("unknown uri type")
)
