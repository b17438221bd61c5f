// Package sipload places the Call Router benchmark's calls as a SIP UAC
// fast enough to outrun the servers it measures.
//
// It sends the calls of a SIPp injection file (sipptest.WriteMix's CSV,
// one call per line: caller;called;reason;diverted;code;contact) as
// SIPp's uac_mix.xml does: one INVITE per line (with a Diversion when the
// line names one), open-loop at a fixed rate, and checks each answer: the
// final status must be the line's and, for a 302, the Contact's
// user@host:port the line's; every final answer is ACKed (RFC 3261
// 17.1.1.3). Over UDP it is an RFC 3261 INVITE client transaction: Timer A
// retransmits from T1 (500 ms) until a provisional or final answer, and
// Timer B ends an unanswered call; over TCP it writes every call on one
// connection (or Config.Conns), as a gateway does.
//
// The run is built for speed on one core: every INVITE is rendered into
// one byte arena before the first is sent, UDP goes out and comes in with
// sendmmsg and recvmmsg in batches, and the receive loop parses only the
// status line, Call-ID, CSeq, To and Contact, without allocating. Result
// holds the per-call latency (INVITE to final answer) and the CPU time
// the process used, so a benchmark shows whether the generator or the
// server saturated.
//
// With Config.FullCalls it places the calls as SIPp's uac_call_mix.xml
// does, through a proxy or B2BUA (UDP): a line the Call Router would
// redirect must be answered 200 with SDP by the back end; the 200 is
// ACKed along its route set to its Contact (RFC 3261 12.1.2, 13.2.2.4:
// loose routing), the call held for Config.Hold and ended with a BYE in
// the dialog (Timer E resends it, Timer F fails the call), which must get
// its 200; every other line must get its status, ACKed in its
// transaction. UAS is the back end for such calls (SIPp's
// uas_answer.xml): it answers every INVITE at once with 200 and SDP over
// UDP and TCP, resends the 200 over UDP until the ACK (Timer G, Timer H
// fails the call), answers BYEs, and counts the calls it took and has up.
package sipload
