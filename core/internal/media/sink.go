package media

// A Sink takes the plain RTP and RTCP packets a leg received, after the leg
// demultiplexed, decrypted, latched and counted them. The relay to the other
// leg is one Sink; a local terminator (a player or recorder of the UM
// worker) is another, put in place with Session.Attach.
//
// Calls come from the session's engine worker, one at a time, with the
// session locked: a Sink must not block, must not call back into the
// Session, and must copy pkt if it keeps it past the call.
type Sink interface {
	RTP(pkt []byte)
	RTCP(pkt []byte)
}

// relay is the Sink that forwards to the other leg of the session. Both legs
// of a session share one worker, so the relay queues straight into that
// worker's flush.
type relay struct {
	to *leg
	w  *worker
}

func (r *relay) RTP(pkt []byte) {
	if r.to.rp != nil {
		r.to.repack(r.w, pkt) // its ptime differs from the other side's (repack.go)
		return
	}
	r.to.sendRTP(r.w, pkt)
}

func (r *relay) RTCP(pkt []byte) {
	if !r.to.ownRTCP { // a re-packetised stream's reports are the engine's own (repack.go)
		r.to.sendRTCP(r.w, pkt)
	}
}

var _ Sink = (*relay)(nil)
