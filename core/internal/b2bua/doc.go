// Package b2bua runs the calls of proxy pools as a back-to-back user agent:
// the SBC of DESIGN.md §5.2. The caller's INVITE (leg A) is answered by the
// core as a UAS; the core places a call of its own (leg B) to the back end
// the routing table chose, handles the back end's 3xx by the caller's
// 3xx mode (R-SBC-7, redirect.go: follows it itself, R-CR-5, by default),
// anchors the media through the media engine and relays what one leg does
// to the other: provisional and final answers, ACK, CANCEL, BYE and
// re-INVITE (hold, resume, codec change, re-key); a REFER is passed on,
// passed on with its Refer-To rewritten onto us (refer_rewrite.go), or
// carried out by the engine itself (transfer.go), by the REFER mode of the
// peer that would receive it.
//
// Topology hiding (R-SBC-1) is by construction: leg B's messages are built
// from scratch — our Via, our Contact, our Call-ID and tags, our SDP — and
// only a fixed list of headers that carry call data (Diversion,
// History-Info, P-Asserted-Identity, Privacy, Subject) is copied across;
// responses carry status, reason, Retry-After and the rewritten SDP only.
// Nothing of one leg's Via, Contact, Record-Route or SDP origin reaches
// the other. A peer's header manipulation rules (R-SBC-10, rules.go) then
// rewrite what is sent to it and what it sent, never those headers.
//
// The package owns no socket. The SIP front hands it the INVITEs of proxy
// pools and every message whose Call-ID belongs to one of its calls
// (Handle), on the front's readers; the engine never blocks there: sends
// are queued (Transport, Sender), media work is in-process, and timers run
// on their own goroutines. Over UDP it retransmits what RFC 3261 §17 says a
// transaction retransmits (INVITE and BYE/CANCEL requests, 2xx and final
// answers until ACK) and absorbs the peers' retransmissions.
//
// Call admission (R-SBC-8): at most Config.MaxCalls calls at once, at most a
// gateway's MaxConcurrentCalls and a back end's MaxCallsAllowed, at most
// Config.CallsPerSecond new calls a second and a gateway's or pool's
// Peer.CallsPerSecond (token buckets, core/internal/ratelimit); a call
// over a limit, or one the media engine has no ports for, gets 503 with
// Retry-After. Every ended call leaves a call detail record (cdr.go).
package b2bua
