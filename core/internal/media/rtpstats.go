package media

// recvStats are the RFC 3550 receiver statistics of the stream a leg
// latched: extended highest sequence number (appendix A.1), cumulative loss
// and interarrival jitter (A.8).
type recvStats struct {
	ssrc     uint32
	started  bool
	baseSeq  uint32
	maxSeq   uint16
	cycles   uint32
	received uint64
	transit  int64  // previous relative transit time, in timestamp units
	jitter   uint64 // RFC 3550 A.8 jitter scaled by 16, in timestamp units
	clock    uint32 // clock rate of the last packet's payload type
}

// reset starts over on a new SSRC.
func (r *recvStats) reset(ssrc uint32) { *r = recvStats{ssrc: ssrc} }

// update accounts one packet: seq and ts from its header, arrival in
// microseconds since the session started, clock the payload's RTP clock rate
// (0 when unknown: no jitter sample).
func (r *recvStats) update(seq uint16, ts uint32, arrivalUs int64, clock uint32) {
	if !r.started {
		r.started = true
		r.baseSeq = uint32(seq)
		r.maxSeq = seq
		r.received = 1
		if clock != 0 {
			r.clock = clock
			r.transit = arrivalUs*int64(clock)/1e6 - int64(ts)
		}
		return
	}
	r.received++
	if d := seq - r.maxSeq; d != 0 && d < 1<<15 {
		if seq < r.maxSeq {
			r.cycles += 1 << 16
		}
		r.maxSeq = seq
	}
	if clock == 0 {
		return
	}
	transit := arrivalUs*int64(clock)/1e6 - int64(ts)
	if clock != r.clock {
		r.clock, r.transit = clock, transit // a payload with another clock: restart the jitter estimate
		return
	}
	d := transit - r.transit
	r.transit = transit
	if d < 0 {
		d = -d
	}
	// J += (|D| - J) / 16, kept scaled by 16 as in A.8.
	r.jitter += uint64(d) - ((r.jitter + 8) >> 4)
}

// lost is the cumulative number of packets lost (expected - received, never
// negative: duplicates are not credited).
func (r *recvStats) lost() uint64 {
	if !r.started {
		return 0
	}
	expected := uint64(r.cycles) + uint64(r.maxSeq) - uint64(r.baseSeq) + 1
	if expected < r.received {
		return 0
	}
	return expected - r.received
}

// jitterMs is the interarrival jitter in milliseconds.
func (r *recvStats) jitterMs() float64 {
	if r.clock == 0 {
		return 0
	}
	return float64(r.jitter>>4) * 1000 / float64(r.clock)
}
