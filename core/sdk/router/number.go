package router

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxE164Digits is the longest E.164 number (ITU-T E.164 §6).
const maxE164Digits = 15

// Extension lengths a TelExtn dial plan may have.
const (
	MinExtensionDigits = 1
	MaxExtensionDigits = 20
)

// NumberFormat is how one dial plan writes the numbers that name its
// mailboxes: the URI type and, for TelExtn, the extension length.
type NumberFormat struct {
	URIType URIType
	Digits  int // TelExtn only
}

// Format returns the dial plan's number format.
func (dp *DialPlan) Format() NumberFormat {
	return NumberFormat{URIType: dp.URIType, Digits: dp.ExtensionDigits}
}

// Key checks that s names a mailbox in format f and returns the key the
// mailbox is looked up by: the digits for TelExtn, "+digits" for E164, and
// the lower-cased user part for SipName (SIP names are compared without
// regard to case, as Exchange compares SIP proxy addresses).
//
// TelExtn wants exactly f.Digits ASCII digits, E164 wants "+" and 1 to 15
// digits, SipName wants a user part of valid UTF-8 without spaces or
// control characters.
func (f NumberFormat) Key(s string) (string, error) {
	if s == "" {
		return "", ErrEmptyNumber
	}
	switch f.URIType {
	case TelExtn:
		if !allDigits(s) {
			return "", fmt.Errorf("%w: %q", ErrNotDigits, s)
		}
		if len(s) != f.Digits {
			return "", fmt.Errorf("%w: %s has %d digits, want %d", ErrWrongLength, s, len(s), f.Digits)
		}
		return s, nil
	case E164:
		digits, ok := strings.CutPrefix(s, "+")
		if !ok || !allDigits(digits) || len(digits) > maxE164Digits {
			return "", fmt.Errorf("%w: %q, want \"+\" and 1 to %d digits", ErrNotE164, s, maxE164Digits)
		}
		return s, nil
	case SIPName:
		if !ValidSIPUser(s) {
			return "", fmt.Errorf("%w: %q", ErrNotSIPUser, s)
		}
		return strings.ToLower(s), nil
	default:
		return "", fmt.Errorf("%w: %q", ErrURIType, f.URIType)
	}
}

// AccessKey is the form in which s is compared with the pilots and access
// numbers of a plan of type t: SIP names without regard to case, numbers
// verbatim.
func AccessKey(s string, t URIType) string {
	if t == SIPName {
		return strings.ToLower(s)
	}
	return s
}

// ValidAccessNumber reports whether n can be dialled to reach subscriber
// access in a plan of type t. TelExtn plans accept any phone number, since
// pilots are often full numbers rather than extensions.
func ValidAccessNumber(n string, t URIType) bool {
	if t == TelExtn {
		return PhoneNumber(n)
	}
	_, err := NumberFormat{URIType: t}.Key(n)
	return err == nil
}

// PhoneNumber reports whether s is digits with an optional leading "+", the
// numeric form a TelExtn dial plan accepts for a calling party or an access
// number (R-ID-5).
func PhoneNumber(s string) bool {
	return allDigits(strings.TrimPrefix(s, "+"))
}

// ValidCaller reports whether a TelExtn dial plan accepts s as the From
// user: a phone number, empty, or "anonymous" in any case (R-ID-5).
func ValidCaller(s string) bool {
	return s == "" || strings.EqualFold(s, "anonymous") || PhoneNumber(s)
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidSIPUser reports whether s can be a SIP user part: valid UTF-8 with
// no spaces or control characters. Escaping is the core's business; it
// hands over decoded user parts.
func ValidSIPUser(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
