package b2bua

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// An ended call stays findable for 64×T1 so that the retransmissions of
// its last exchanges are answered, not taken for new calls. At thousands
// of calls a second that is ~100,000 ended calls for every few thousand
// live ones, and as call structs (30-odd objects each: the INVITE as
// sipgo parsed it, the legs' strings, the answers' bytes) they were most
// of the live heap, which the collector marks again on every cycle. So
// an ended call, once it has settled — its transactions done, its leg B
// ACKed (settled) — is replaced by a tombstone: the bytes its answers
// are made of, written into a chunk of an arena, found through a map
// from a hash of each leg's Call-ID to the tombstone's number. Nothing of
// it holds a pointer: the map (uint64 → uint64), the ring of tombstone
// headers and the arena's chunks are objects the collector marks without
// scanning, a few hundred of them in all however many calls ended, and
// the call struct goes to the collector at once. Tombstones are freed in
// the order they were made, so a ring of headers and a FIFO of chunks
// free them with no search; that is nearly the order they are due (every
// one waits 64×T1 from its call's end), not quite: calls settle in
// another order than they end, and one made later may be due earlier.
// It is unfindable once due (lookup) and freed when the ones before it
// are, at most 64×T1 later.
//
// A tombstone answers as the ended call did (handle.go for an ended call
// with nothing in progress): a retransmitted INVITE, come as the caller's
// did, gets our last answer again, the back end's retransmitted 2xx our ACK again, a BYE its 200,
// an INVITE in the dialog 500, a request outside it 481, a new INVITE
// with the ended call's Call-ID drops it (a new call). What it keeps is
// tombRecord. A call with anything left to do (a BYE unanswered, a
// transfer, leg B's INVITE not answered or not ACKed, a CANCEL owed)
// stays a call struct and is looked at again every T1 until its 64×T1 is
// over. One way only a tombstone answers otherwise: a refused call's
// leg B answered with a 2xx after the refusal (a forking back end) gets
// nothing, where the whole call would ACK it and hang up; the back end
// gives up on its 2xx after 64×T1 and hangs up itself (RFC 3261
// §13.3.1.4).

// tombs are the tombstones of ended calls; guarded by the engine's mu.
type tombs struct {
	seed maphash.Seed
	idx  map[uint64]uint64 // hash of either leg's Call-ID → tombstone number
	ring []tomb            // ring[head:] wait, oldest first; ring[i] is number base+i
	head int
	base uint64
	// chunks hold the records; chunks[i] is chunk number cbase+i, the
	// last one is written into.
	chunks [][]byte
	cbase  uint64
	spare  [][]byte // emptied chunks, reused
	// max bounds the tombstones (Config.MaxEnded; 0 = none): at it, the
	// oldest is forgotten before its time to make room, and counted in
	// evicted. Its call's late retransmissions then meet no call (a BYE
	// gets 481, an INVITE is a new call with a Call-ID a back end may still
	// know), which is what a box out of memory would do worse.
	max     int
	evicted uint64
}

// tomb locates one tombstone's record.
type tomb struct {
	due    int64 // forgotten then, UnixNano
	chunk  uint64
	off, n uint32
	hA, hB uint64
}

// tombChunk is the size of an arena chunk: 256 KiB hold ~200 records;
// a larger record gets a chunk of its own.
const tombChunk = 256 << 10

// maxSpareChunks is how many emptied chunks are kept for reuse.
const maxSpareChunks = 4

func (ts *tombs) len() int { return len(ts.ring) - ts.head }

// insert adds the tombstone rec of a call whose legs have Call-IDs aID and
// bID, until due; false (nothing added) when a hash is taken already,
// which a hash collision or a Call-ID still a tombstone's would do: the
// call then stays a call.
func (ts *tombs) insert(rec []byte, aID, bID string, due time.Time) bool {
	if ts.idx == nil {
		ts.idx, ts.seed = map[uint64]uint64{}, maphash.MakeSeed()
	}
	hA, hB := maphash.String(ts.seed, aID), maphash.String(ts.seed, bID)
	if _, ok := ts.idx[hA]; ok || hA == hB {
		return false
	}
	if _, ok := ts.idx[hB]; ok {
		return false
	}
	if ts.max > 0 && ts.len() >= ts.max {
		ts.unindex(ts.base + uint64(ts.head)) // its record goes with the next expire's chunks
		ts.head++
		ts.evicted++
		if ts.head > len(ts.ring)/2 {
			ts.compact()
		}
	}
	last := len(ts.chunks) - 1
	if last < 0 || len(ts.chunks[last])+len(rec) > cap(ts.chunks[last]) {
		ts.chunks = append(ts.chunks, ts.newChunk(len(rec)))
		last++
	}
	off := len(ts.chunks[last])
	ts.chunks[last] = append(ts.chunks[last], rec...)
	n := ts.base + uint64(len(ts.ring))
	ts.ring = append(ts.ring, tomb{due: due.UnixNano(), chunk: ts.cbase + uint64(last), off: uint32(off), n: uint32(len(rec)), hA: hA, hB: hB})
	ts.idx[hA], ts.idx[hB] = n, n
	return true
}

func (ts *tombs) newChunk(need int) []byte {
	if need > tombChunk {
		return make([]byte, 0, need)
	}
	if k := len(ts.spare); k > 0 {
		c := ts.spare[k-1]
		ts.spare[k-1] = nil
		ts.spare = ts.spare[:k-1]
		return c
	}
	return make([]byte, 0, tombChunk)
}

// lookup returns a copy of the record of the tombstone whose Call-ID
// hashes as id's, and its number; nil when there is none, it is due by
// now, or match (nil: any) refuses the record, which it reads in place.
// The caller checks the Call-ID in the record.
func (ts *tombs) lookup(id string, now time.Time, match func(rec []byte) bool) ([]byte, uint64) {
	if ts.len() == 0 {
		return nil, 0
	}
	n, ok := ts.idx[maphash.String(ts.seed, id)]
	if !ok {
		return nil, 0
	}
	t := ts.ring[n-ts.base]
	if t.due <= now.UnixNano() {
		return nil, 0 // freed with the ones before it
	}
	c := ts.chunks[t.chunk-ts.cbase]
	rec := c[t.off : t.off+t.n]
	if match != nil && !match(rec) {
		return nil, 0
	}
	return append([]byte(nil), rec...), n
}

// has reports whether a tombstone's Call-ID may be id (a hash match).
func (ts *tombs) has(id string) bool {
	if ts.len() == 0 {
		return false
	}
	_, ok := ts.idx[maphash.String(ts.seed, id)]
	return ok
}

// forget makes tombstone n unfindable (a new call took its Call-ID); its
// record goes when its time is up.
func (ts *tombs) forget(n uint64) {
	if n < ts.base+uint64(ts.head) || n >= ts.base+uint64(len(ts.ring)) {
		return
	}
	ts.unindex(n)
}

func (ts *tombs) unindex(n uint64) {
	t := ts.ring[n-ts.base]
	for _, h := range []uint64{t.hA, t.hB} {
		if ts.idx[h] == n {
			delete(ts.idx, h)
		}
	}
}

// expire drops the tombstones due by now and the chunks no tombstone
// uses any more; it returns when the next is due (zero: none waits).
func (ts *tombs) expire(now time.Time) time.Time {
	at := now.UnixNano()
	for ts.head < len(ts.ring) && ts.ring[ts.head].due <= at {
		ts.unindex(ts.base + uint64(ts.head))
		ts.head++
	}
	ts.compact()
	if ts.len() == 0 {
		return time.Time{}
	}
	return time.Unix(0, ts.ring[ts.head].due)
}

// compact lets go of the ring's slots before head and of the chunks no
// tombstone from head on uses.
func (ts *tombs) compact() {
	if ts.head == len(ts.ring) {
		ts.base += uint64(len(ts.ring))
		ts.ring, ts.head = ts.ring[:0], 0
	} else if ts.head > len(ts.ring)/2 {
		n := copy(ts.ring, ts.ring[ts.head:])
		ts.ring = ts.ring[:n]
		ts.base += uint64(ts.head)
		ts.head = 0
	}
	used := ts.cbase + uint64(len(ts.chunks)) // none: every chunk may go, the last one emptied
	if ts.len() > 0 {
		used = ts.ring[ts.head].chunk
	}
	drop := int(used - ts.cbase)
	for i := range drop {
		c := ts.chunks[i]
		if i == len(ts.chunks)-1 { // the chunk written into: emptied, kept
			ts.chunks[i] = c[:0]
			drop = i
			break
		}
		if cap(c) == tombChunk && len(ts.spare) < maxSpareChunks {
			ts.spare = append(ts.spare, c[:0])
		}
		ts.chunks[i] = nil
	}
	if drop > 0 {
		n := copy(ts.chunks, ts.chunks[drop:])
		clear(ts.chunks[n:])
		ts.chunks = ts.chunks[:n]
		ts.cbase += uint64(drop)
	}
}

// tombRecord is what a tombstone keeps of its call: what the answers of an
// ended call are made of (handle.go), bytes and values only.
type tombRecord struct {
	aCallID, aBranch, aLocalTag string
	aSrc                        netip.Addr // the caller's address: its messages come from it (fromA)
	aLast                       []byte     // our last answer to the INVITE
	aReAck                      []byte     // our ACK of the caller's 2xx to our last re-INVITE
	aReAckCSeq                  uint32
	gateway, pool               string // the peers, by whose rules and modes messages pass
	bCallID, bLocalTag          string
	bPeers                      []netip.Addr // leg B's messages come from one of them (fromB)
	bInviteCSeq                 uint32
	bAck                        []byte // our ACK of leg B's 2xx
	bReAck                      []byte
	bReAckCSeq                  uint32
	bTp                         router.Transport
	bDst, bLocal                netip.AddrPort
	bServerName, bRURI          string
	bBranch, bFrom              string // of leg B's INVITE: the ACK of a non-2xx answer is in its transaction
	// How the caller's INVITE came, and where our requests to it go (its
	// NAT's mapping over UDP, nat.go): the INVITE again gets our last
	// answer, the 2xx to our re-INVITE again our ACK, only the same way,
	// as the whole call sends them there, not on the connection (or to
	// the port) a copy came on.
	aTp          router.Transport
	aFrom, aReqs netip.AddrPort
}

// settled reports whether c has ended with nothing left to do but answer
// retransmissions, which its tombstone can then do: leg B's INVITE, if
// one went out, answered with a 2xx or a failure and ACKed; c.mu held.
func (c *call) settled() bool {
	placed := c.b.inviteTx != nil // else no INVITE went to leg B, nor will (resolve)
	if c.state != ended || placed && c.b.ack == nil && !c.b.refused || c.b.invite != nil || c.reinvite != nil || c.xfer != nil ||
		c.notes != nil && c.notes.x != nil || c.a.called != nil || len(c.relays) > 0 {
		return false
	}
	for _, r := range []*retrans{c.a.final, c.a.out, c.b.inviteTx, c.b.cancelTx, c.b.byeTx, c.keepTx} {
		if r != nil && !r.stopped {
			return false
		}
	}
	return true
}

// tombstone appends c's tombstone record to b; c.mu held, c settled.
func (c *call) tombstone(b []byte) []byte {
	w := recWriter{b}
	w.str(c.a.callID)
	w.str(c.a.branch)
	w.str(c.a.localTag)
	writeText(&w, c.a.in.Source.Addr())
	w.bytes(c.a.last)
	w.bytes(c.a.reAck)
	w.u32(c.a.reAckCSeq)
	w.str(c.target.Gateway)
	w.str(c.target.Pool)
	w.str(c.b.callID)
	w.str(c.b.localTag)
	w.u32(uint32(len(c.b.peers)))
	for _, p := range c.b.peers {
		writeText(&w, p)
	}
	w.u32(c.b.inviteCSeq)
	w.bytes(c.b.ack)
	w.bytes(c.b.reAck)
	w.u32(c.b.reAckCSeq)
	w.str(string(c.b.tp))
	writeText(&w, c.b.dst)
	writeText(&w, c.b.local)
	w.str(c.b.serverName)
	w.str(c.b.ruri)
	w.str(c.b.branch)
	w.str(c.b.from)
	w.str(string(c.a.in.Transport))
	writeText(&w, c.a.in.Source)
	if c.a.requestsTo.IsValid() {
		writeText(&w, c.a.requestsTo)
	} else {
		writeText(&w, c.a.in.Source)
	}
	return w.b
}

type recWriter struct{ b []byte }

func (w *recWriter) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }

func (w *recWriter) bytes(v []byte) {
	w.b = binary.AppendUvarint(w.b, uint64(len(v)))
	w.b = append(w.b, v...)
}

// writeText writes an address's text form (netip.Addr or AddrPort), as
// str would: under 128 bytes (an IPv6 address, zone and port), so its
// length is one byte.
func writeText[T interface{ AppendTo([]byte) []byte }](w *recWriter, a T) {
	i := len(w.b)
	w.b = a.AppendTo(append(w.b, 0))
	w.b[i] = byte(len(w.b) - i - 1)
}

func (w *recWriter) str(v string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(v)))
	w.b = append(w.b, v...)
}

type recReader struct {
	b   []byte
	bad bool
}

func (r *recReader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *recReader) bytes() []byte {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.bad = true
		return nil
	}
	v := r.b[k : k+int(n) : k+int(n)]
	r.b = r.b[k+int(n):]
	if len(v) == 0 {
		return nil
	}
	return v
}

func (r *recReader) str() string { return string(r.bytes()) }

func (r *recReader) addr() netip.Addr {
	a, err := netip.ParseAddr(r.str())
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func (r *recReader) addrPort() netip.AddrPort {
	a, err := netip.ParseAddrPort(r.str())
	if err != nil {
		return netip.AddrPort{}
	}
	return a
}

// tombFrom reports whether the record rec (as tombstone writes it) is of
// a call with a leg of Call-ID id whose peer is at src: the check that
// handleTomb makes, read in place with no allocation, so that messages
// from elsewhere with an ended call's Call-ID cost no copy and decoding.
func tombFrom(rec []byte, id string, src netip.Addr) bool {
	var buf [64]byte
	s := string(src.AppendTo(buf[:0]))
	r := recReader{b: rec}
	aID := r.bytes()
	r.bytes() // aBranch
	r.bytes() // aLocalTag
	if aSrc := r.bytes(); string(aID) == id {
		return string(aSrc) == s
	}
	r.bytes() // aLast
	r.bytes() // aReAck
	r.u32()
	r.bytes() // gateway
	r.bytes() // pool
	if string(r.bytes()) != id {
		return false
	}
	r.bytes() // bLocalTag
	for n := r.u32(); n > 0 && !r.bad; n-- {
		if string(r.bytes()) == s {
			return true
		}
	}
	return false
}

// readTomb decodes a record tombstone wrote; false when it is not one.
func readTomb(b []byte) (tombRecord, bool) {
	r := recReader{b: b}
	var t tombRecord
	t.aCallID, t.aBranch, t.aLocalTag = r.str(), r.str(), r.str()
	t.aSrc = r.addr()
	t.aLast, t.aReAck, t.aReAckCSeq = r.bytes(), r.bytes(), r.u32()
	t.gateway, t.pool = r.str(), r.str()
	t.bCallID, t.bLocalTag = r.str(), r.str()
	for n := r.u32(); n > 0 && !r.bad; n-- {
		t.bPeers = append(t.bPeers, r.addr())
	}
	t.bInviteCSeq = r.u32()
	t.bAck, t.bReAck, t.bReAckCSeq = r.bytes(), r.bytes(), r.u32()
	t.bTp = router.Transport(r.str())
	t.bDst, t.bLocal = r.addrPort(), r.addrPort()
	t.bServerName, t.bRURI, t.bBranch, t.bFrom = r.str(), r.str(), r.str(), r.str()
	t.aTp, t.aFrom, t.aReqs = router.Transport(r.str()), r.addrPort(), r.addrPort()
	return t, !r.bad && len(r.b) == 0
}

// handleTomb takes a message of the ended call whose tombstone (number n)
// rec is, as handleA and handleB take one of an ended call; false as
// they: the message is none of its dialogs' (the front handles it).
func (e *Engine) handleTomb(rec []byte, n uint64, id string, msg sip.Message, in Inbound) bool {
	t, ok := readTomb(rec)
	if !ok {
		return false
	}
	switch {
	case id == t.bCallID && t.fromB(in.Source.Addr()):
		rs := e.cfg.Peers[t.pool].Rules
		e.inbound(rs, msg)
		e.tombB(&t, msg, e.withRules(rs, in))
		return true
	case id == t.aCallID && in.Source.Addr() == t.aSrc:
		rs := e.cfg.Peers[t.gateway].Rules
		e.inbound(rs, msg)
		return e.tombA(&t, n, msg, e.withRules(rs, in))
	}
	return false
}

func (t *tombRecord) fromB(src netip.Addr) bool {
	for _, a := range t.bPeers {
		if a == src {
			return true
		}
	}
	return false
}

// tombA is handleA for a tombstone.
func (e *Engine) tombA(t *tombRecord, n uint64, msg sip.Message, in Inbound) bool {
	switch m := msg.(type) {
	case *sip.Request:
		return e.tombRequestA(t, n, m, in)
	case *sip.Response: // responseA: the 2xx of our last re-INVITE again
		if cs := m.CSeq(); cs.MethodName == sip.INVITE && m.StatusCode >= 200 && m.StatusCode < 300 && t.aReAck != nil && cs.SeqNo == t.aReAckCSeq &&
			in.Transport == t.aTp && in.Source == t.aReqs {
			in.Requests.Send(t.aReAck)
		}
	}
	return true
}

// tombRequestA is requestA for a tombstone.
func (e *Engine) tombRequestA(t *tombRecord, n uint64, req *sip.Request, in Inbound) bool {
	toTag := tagOf(req.To().Params)
	ours := toTag == t.aLocalTag
	switch req.Method {
	case sip.INVITE:
		switch {
		case toTag == "" && branchOf(req) == t.aBranch:
			if t.aLast != nil && in.Transport == t.aTp && in.Source == t.aFrom {
				in.Reply.Send(t.aLast)
			}
		case toTag == "":
			e.mu.Lock()
			e.tombs.forget(n)
			e.mu.Unlock()
			return false // a new call that reuses an ended call's Call-ID
		case ours:
			in.Reply.Send(response(req, in.Source, "", 500, "Server Internal Error", []string{"Retry-After: 1"}, nil))
		default:
			return false
		}
	case sip.ACK:
	case sip.CANCEL:
		if branchOf(req) != t.aBranch {
			return false
		}
		in.Reply.Send(response(req, in.Source, t.aLocalTag, 200, "OK", nil, nil))
	case sip.BYE:
		if !ours {
			return false
		}
		in.Reply.Send(response(req, in.Source, "", 200, "OK", nil, nil))
	case sip.OPTIONS:
		in.Reply.Send(response(req, in.Source, "", 200, "OK", []string{allow}, nil))
	case sip.REFER:
		switch {
		case ours && e.referMode(t.pool) == ReferLocal:
			e.refuseTransfer(t.bCallID, req, in, 481, "Call/Transaction Does Not Exist", "no call to transfer")
		case ours:
			in.Reply.Send(response(req, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		default:
			in.Reply.Send(response(req, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
		}
	default:
		if _, ok := relayed[req.Method]; ok && ours {
			in.Reply.Send(response(req, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
			break
		}
		in.Reply.Send(response(req, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
	}
	return true
}

// tombB is handleB for a tombstone.
func (e *Engine) tombB(t *tombRecord, msg sip.Message, in Inbound) {
	send := func(b []byte) { e.sendBack(t.pool, t.bTp, t.bDst, t.bServerName, t.bCallID, b) }
	switch m := msg.(type) {
	case *sip.Response: // responseB
		cs := m.CSeq()
		code := m.StatusCode
		switch {
		case cs.MethodName == sip.INVITE && cs.SeqNo == t.bInviteCSeq && code >= 300:
			send(failureAck(t.bRURI, t.bTp, t.bLocal, t.bBranch, t.bFrom, m.To(), t.bCallID, t.bInviteCSeq))
		case cs.MethodName == sip.INVITE && cs.SeqNo == t.bInviteCSeq && code >= 200 && t.bAck != nil:
			send(t.bAck) // the 2xx again: our ACK was lost
		case cs.MethodName == sip.INVITE && code >= 200 && code < 300 && t.bReAck != nil && cs.SeqNo == t.bReAckCSeq:
			send(t.bReAck)
		}
	case *sip.Request: // requestB
		if tagOf(m.To().Params) != t.bLocalTag {
			if m.Method != sip.ACK {
				in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
			}
			return
		}
		switch m.Method {
		case sip.BYE, sip.CANCEL:
			in.Reply.Send(response(m, in.Source, "", 200, "OK", nil, nil))
		case sip.INVITE:
			in.Reply.Send(response(m, in.Source, "", 500, "Server Internal Error", []string{"Retry-After: 1"}, nil))
		case sip.ACK:
		case sip.OPTIONS:
			in.Reply.Send(response(m, in.Source, "", 200, "OK", []string{allow}, nil))
		case sip.REFER:
			if e.referMode(t.gateway) == ReferLocal {
				e.refuseTransfer(t.bCallID, m, in, 481, "Call/Transaction Does Not Exist", "no call to transfer")
				break
			}
			in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		default:
			if _, ok := relayed[m.Method]; ok {
				in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
				break
			}
			in.Reply.Send(response(m, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
		}
	}
}
