package bootslot

import "errors"

var (
	// ErrNoBootedEntry means the entry the running system booted from could
	// not be found on the ESP.
	ErrNoBootedEntry = errors.New("bootslot: booted entry not found")
	// ErrNoEntry means no entry on the ESP can be booted.
	ErrNoEntry = errors.New("bootslot: no bootable entry")
	// ErrBadSlot means a slot name is not "a" or "b".
	ErrBadSlot = errors.New("bootslot: slot must be a or b")
	// ErrMalformed means an entry file or an EFI variable cannot be parsed.
	ErrMalformed = errors.New("malformed")
)
