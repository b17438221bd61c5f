package sipfront

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// answerTTL is how long the answer to a UDP INVITE is kept for its
// retransmissions: Timer B, 64·T1 (RFC 3261 §17.1.1.2), after which the
// client has given up.
const answerTTL = 32 * time.Second

// answerSlots is how many UDP INVITE transactions are remembered at most
// (40 B each, 2.5 MiB in all, allocated once). When more arrive within answerTTL the oldest colliding one
// is forgotten, and its retransmission is decided again from the table:
// the same answer unless the configuration, a rate or a health state
// changed in between.
const answerSlots = 1 << 16

const answerShards = 64

// rejectLogInterval spaces "call rejected" log lines: at most 100 a second,
// however many calls a flood gets refused; all are counted.
const rejectLogInterval = 10 * time.Millisecond

// answer is what an INVITE transaction was answered, enough to write the
// same response again: a 302 to backend, or status.
type answer struct {
	pending bool            // the router plugin is still deciding: 100 Trying over a stream, nothing over UDP
	backend *router.Backend // set for a 302
	status  *status         // set for a refusal: an entry of statusMap
}

// answers remembers the answers of recent UDP INVITE transactions, so that
// a retransmitted INVITE gets the answer the first one got — never a
// second rate-limit token, never another decision after a reload. It is a
// fixed-size, direct-mapped table: bounded memory whatever a flood sends,
// no allocation per call.
type answers struct {
	seed   maphash.Seed
	shards [answerShards]answerShard
}

type answerShard struct {
	mu    sync.Mutex
	slots [answerSlots / answerShards]answerSlot
}

type answerSlot struct {
	key     uint64
	expires int64 // unix nanoseconds; 0 = empty
	answer  answer
}

func newAnswers() *answers { return &answers{seed: maphash.MakeSeed()} }

// txKey identifies an INVITE's server transaction (RFC 3261 §17.2.3: the
// top Via's branch and sent-by; only INVITEs get here, so the method is
// implied) with its Call-ID, CSeq and source, hashed
// with a per-process random seed so that no peer can aim a collision.
func (a *answers) txKey(req *sip.Request, src netip.AddrPort) uint64 {
	var h maphash.Hash
	h.SetSeed(a.seed)
	b := src.Addr().As16()
	_, _ = h.Write(b[:])
	_ = h.WriteByte(byte(src.Port() >> 8))
	_ = h.WriteByte(byte(src.Port()))
	if v := req.Via(); v != nil {
		branch, _ := v.Params.Get("branch")
		_, _ = h.WriteString(branch)
		_ = h.WriteByte(0)
		_, _ = h.WriteString(v.Host)
		_ = h.WriteByte(byte(v.Port >> 8))
		_ = h.WriteByte(byte(v.Port))
	}
	_ = h.WriteByte(0)
	_, _ = h.WriteString(callID(req))
	if cs := req.CSeq(); cs != nil {
		n := cs.SeqNo
		_ = h.WriteByte(byte(n >> 24))
		_ = h.WriteByte(byte(n >> 16))
		_ = h.WriteByte(byte(n >> 8))
		_ = h.WriteByte(byte(n))
	}
	return h.Sum64() | 1 // never 0, the empty key
}

func (a *answers) slot(key uint64) (*answerShard, *answerSlot) {
	sh := &a.shards[key%answerShards]
	return sh, &sh.slots[(key/answerShards)%uint64(len(sh.slots))]
}

// get returns the answer remembered for key, if it has not expired.
func (a *answers) get(key uint64, now time.Time) (answer, bool) {
	sh, sl := a.slot(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sl.key != key || sl.expires < now.UnixNano() {
		return answer{}, false
	}
	return sl.answer, true
}

// put remembers ans for key for answerTTL.
func (a *answers) put(key uint64, ans answer, now time.Time) {
	sh, sl := a.slot(key)
	sh.mu.Lock()
	sl.key, sl.expires, sl.answer = key, now.Add(answerTTL).UnixNano(), ans
	sh.mu.Unlock()
}

// pend remembers that key is being decided, unless its final answer is
// already there: a routing worker may answer before the reader gets here.
func (a *answers) pend(key uint64, now time.Time) {
	sh, sl := a.slot(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sl.key == key && sl.expires >= now.UnixNano() && !sl.answer.pending {
		return
	}
	sl.key, sl.expires, sl.answer = key, now.Add(answerTTL).UnixNano(), answer{pending: true}
}
