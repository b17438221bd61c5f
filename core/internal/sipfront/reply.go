package sipfront

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// replier sends one SIP message back to where a request came from. Safe for concurrent use; never blocks.
type replier interface{ reply(b []byte) }

// replyPath is how answers to one reader's messages leave: its UDP socket
// or its stream connection. The reader that owns the peer sets it once.
type replyPath struct {
	udp    *udpSocket  // UDP readers
	stream *streamConn // TCP and TLS readers
}

// replierFor returns a replier for answers to req sent after the reader
// has moved on (e.g. from a routing worker): it copies what it needs, so
// the reused peer may change under it. Over UDP the answer goes to
// responseAddr; over a stream, onto the connection's send queue, dropped
// once the connection has closed.
func (p *peer) replierFor(req *sip.Request) replier {
	switch rp := p.reply; {
	case rp.stream != nil:
		return rp.stream
	case rp.udp != nil:
		return udpReplier{pc: rp.udp, dst: responseAddr(req, p)}
	default:
		return noReply{}
	}
}

// udpReplier sends to one address from one socket. A UDP send never waits
// for the peer: the kernel queues the datagram or drops it, and the client
// retransmits (RFC 3261 §17.1.1.2).
type udpReplier struct {
	pc  *udpSocket
	dst netip.AddrPort
}

func (u udpReplier) reply(b []byte) {
	if len(b) > 0 && u.dst.IsValid() {
		_ = u.pc.send(b, u.dst)
	}
}

// Send is reply: a udpReplier is the B2BUA's Sender as it is, not
// wrapped in a sender (one allocation per message less).
func (u udpReplier) Send(b []byte) { u.reply(b) }

// noReply is the replier of a peer with no reply path (in-process tests).
type noReply struct{}

func (noReply) reply([]byte) {}

var (
	_ replier = udpReplier{}
	_ replier = (*streamConn)(nil)
	_ replier = noReply{}
)
