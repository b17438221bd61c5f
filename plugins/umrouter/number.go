package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// uriType is a dial plan's URI type (Exchange UMUriType, R-ID-5). It decides
// how the numbers of the plan are written and how mailboxes are found.
type uriType string

// The URI types of R-ID-5.
const (
	uriTelExtn uriType = "TelExtn" // numeric extensions of a fixed length
	uriE164    uriType = "E164"    // "+"-prefixed E.164 numbers
	uriSIPName uriType = "SipName" // SIP user parts (Lync/Skype dial plans)
)

// maxE164Digits is the longest E.164 number (ITU-T E.164 §6).
const maxE164Digits = 15

// numberFormat is how one dial plan writes the numbers that name its
// mailboxes: the URI type and, for TelExtn, the extension length.
type numberFormat struct {
	uriType uriType
	digits  int // NumberOfDigitsInExtension, 1..20
}

// parseNumber checks that s names a mailbox in format f and returns the key
// the mailbox is looked up by: the digits for TelExtn, "+digits" for E164,
// and the lower-cased user part for SipName (SIP names are compared without
// regard to case, as Exchange compares SIP proxy addresses).
//
// TelExtn wants exactly f.digits ASCII digits, E164 wants "+" and 1 to 15
// digits, SipName wants a non-empty user part without spaces or control
// characters.
func parseNumber(s string, f numberFormat) (string, error) {
	if s == "" {
		return "", errEmptyNumber
	}
	switch f.uriType {
	case uriTelExtn:
		if !allDigits(s) {
			return "", fmt.Errorf("%w: %q", errNotDigits, s)
		}
		if len(s) != f.digits {
			return "", fmt.Errorf("%w: %s has %d digits, want %d", errWrongLength, s, len(s), f.digits)
		}
		return s, nil
	case uriE164:
		digits, ok := strings.CutPrefix(s, "+")
		if !ok || !allDigits(digits) || len(digits) > maxE164Digits {
			return "", fmt.Errorf("%w: %q, want \"+\" and 1 to %d digits", errNotE164, s, maxE164Digits)
		}
		return s, nil
	case uriSIPName:
		if !sipUser(s) {
			return "", fmt.Errorf("%w: %q", errNotSIPUser, s)
		}
		return strings.ToLower(s), nil
	default:
		return "", fmt.Errorf("%w: %q", errURIType, f.uriType)
	}
}

// lookupKey is the form in which s is compared with the pilots and access
// numbers of a plan of type t: SIP names without regard to case, numbers
// verbatim.
func lookupKey(s string, t uriType) string {
	if t == uriSIPName {
		return strings.ToLower(s)
	}
	return s
}

// phoneNumber reports whether s is digits with an optional leading "+", the
// numeric form a TelExtn dial plan accepts for a calling party or an access
// number (R-ID-5).
func phoneNumber(s string) bool {
	return allDigits(strings.TrimPrefix(s, "+"))
}

// acceptableCaller reports whether a TelExtn dial plan accepts s as the From
// user: a phone number, empty, or "anonymous" in any case (R-ID-5).
func acceptableCaller(s string) bool {
	return s == "" || strings.EqualFold(s, "anonymous") || phoneNumber(s)
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

// sipUser reports whether s can be a SIP user part: valid UTF-8 with no
// spaces or control characters. Escaping is the core's business; it hands
// over decoded user parts.
func sipUser(s string) bool {
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
