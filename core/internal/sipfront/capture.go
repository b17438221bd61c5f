package sipfront

import (
	"net/netip"
	"sync/atomic"

	"github.com/umedge/umedge/core/internal/hep"
	"github.com/umedge/umedge/core/sdk/router"
)

// SIP capture (capture.hep): every message the front end receives or
// sends, for the Call Router and both legs of the B2BUA, is handed to a
// HEP sender at two places only: received, where a UDP datagram or a
// stream message is about to be parsed (handleDatagram, parseStream);
// sent, where bytes leave, a UDP socket's send or a stream connection's
// enqueue. TLS messages are captured in clear. With capture off that is
// one atomic load per message; with it on, one copy into the sender's
// queue, which never blocks (package hep).

// tap holds the HEP sender; none means capture is off. A nil *tap (tests
// that build parts alone) captures nothing.
type tap struct{ h atomic.Pointer[hep.Sender] }

// capture hands a copy of b, sent from src to dst over tp, to the sender.
func (t *tap) capture(tp router.Transport, src, dst netip.AddrPort, b []byte) {
	if t == nil {
		return
	}
	h := t.h.Load()
	if h == nil || isKeepAlive(b) {
		return
	}
	h.Capture(hepProto(tp), src, dst, b)
}

// received captures a message from p.
func (t *tap) received(p *peer, b []byte) { t.capture(p.transport, p.src, p.local, b) }

func hepProto(tp router.Transport) hep.Proto {
	switch tp {
	case router.TCP:
		return hep.TCP
	case router.TLS:
		return hep.TLS
	default:
		return hep.UDP
	}
}

// SetCapture makes h the HEP sender, nil turning capture off, and returns
// the one it replaces for the caller to close.
func (s *Server) SetCapture(h *hep.Sender) *hep.Sender { return s.capture.h.Swap(h) }
