package media

import "errors"

var (
	// ErrNoPorts means the port pool has no free RTP/RTCP pair left; the
	// B2BUA answers 503 with Retry-After.
	ErrNoPorts = errors.New("media: no free ports")
	// ErrBadSDP means an SDP body could not be parsed or lacks what an
	// offer or answer needs; wrapped with the detail for a 488 Warning.
	ErrBadSDP = errors.New("media: bad SDP")
	// ErrNotAcceptable means a well-formed SDP cannot be served under the
	// leg's profile (no common codec, no acceptable crypto on a Secured
	// leg); wrapped with the detail for a 488 Warning.
	ErrNotAcceptable = errors.New("media: not acceptable")
	// ErrConfig means the engine's Config or a leg profile cannot work
	// (a bad port range, a local address that is not unicast).
	ErrConfig = errors.New("media: bad configuration")
	// ErrNoPeer is returned by Send on a leg that knows no peer address
	// yet (no answer, or on hold).
	ErrNoPeer = errors.New("media: no peer address")
	// ErrClosed is returned by a closed Session or Engine.
	ErrClosed = errors.New("media: closed")
	// ErrNoOffer is returned by Answer when no offer from the other side
	// is pending.
	ErrNoOffer = errors.New("media: no pending offer")

	// errZoned: an idle pair on a zoned IPv6 address is not kept
	// (pairpool.go): connecting it to itself would need the zone's index.
	errZoned = errors.New("media: zoned address")
)
