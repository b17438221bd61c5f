package bundle

import "errors"

var (
	// ErrMalformed means the bundle is not a bundle: bad tar, bad manifest,
	// entries out of order or unknown.
	ErrMalformed = errors.New("bundle: malformed")
	// ErrTruncated means the bundle ends before its last payload does.
	ErrTruncated = errors.New("bundle: truncated")
	// ErrSignature means no trusted key signed the manifest.
	ErrSignature = errors.New("bundle: signature not valid for any trusted key")
	// ErrIncompatible means the bundle is for other hardware.
	ErrIncompatible = errors.New("bundle: not for this hardware")
	// ErrDowngrade means the bundle's version is not above the installed one.
	ErrDowngrade = errors.New("bundle: version not newer than installed")
	// ErrPayload means a payload's bytes do not match its manifest line.
	ErrPayload = errors.New("bundle: payload does not match manifest")
)
