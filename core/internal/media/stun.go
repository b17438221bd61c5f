package media

import (
	"crypto/rand"
	"net/netip"
	"strings"

	"github.com/pion/stun/v4"
)

// iceCreds are a leg's ICE-lite credentials (RFC 8445 §2.5): we answer
// connectivity checks, we never send any.
type iceCreds struct {
	ufrag, pwd string
}

const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func iceString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("media: crypto/rand: " + err.Error()) // never fails on Linux ≥ 3.17
	}
	for i := range b {
		b[i] = iceChars[int(b[i])%len(iceChars)]
	}
	return string(b)
}

func newICECreds() *iceCreds { return &iceCreds{ufrag: iceString(8), pwd: iceString(24)} }

// stun answers a STUN binding request that arrived on s. On a leg that does
// ICE the request must carry our ufrag and a MESSAGE-INTEGRITY made with our
// password; a nominating check (USE-CANDIDATE) latches its source. Anything
// else is a stray. This path is off the relay's: it may allocate.
func (l *leg) stun(w *worker, s *sock, pkt []byte, src netip.AddrPort) {
	if !stun.IsMessage(pkt) {
		l.stats.strays++
		return
	}
	req := &stun.Message{Raw: append([]byte(nil), pkt...)}
	if err := req.Decode(); err != nil || req.Type != stun.BindingRequest {
		l.stats.strays++
		return
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
	}
	if l.ice != nil {
		var user stun.Username
		if err := user.GetFrom(req); err != nil || !strings.HasPrefix(user.String(), l.ice.ufrag+":") {
			l.stats.strays++
			return
		}
		integrity := stun.NewShortTermIntegrity(l.ice.pwd)
		if err := integrity.Check(req); err != nil {
			l.stats.strays++
			return
		}
		if req.Contains(stun.AttrFingerprint) {
			if err := stun.Fingerprint.Check(req); err != nil {
				l.stats.strays++
				return
			}
		}
		if req.Contains(stun.AttrUseCandidate) {
			// The nominated pair is the latch; the kernel's entries
			// follow a new nomination as they follow a re-latch.
			if !s.rtcp {
				l.latch(src, l.ssrc)
			} else if src != l.latchRTCP {
				l.latchRTCP = src
				l.sess.offloadUpdate()
			}
		}
		setters = append(setters, integrity)
	}
	setters = append(setters, stun.Fingerprint)
	w.room()
	resp := &stun.Message{Raw: w.tbuf[w.ntx][:0]}
	if err := resp.Build(setters...); err != nil {
		return
	}
	w.queue(s.fd, src, resp.Raw)
}
