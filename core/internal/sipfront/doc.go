// Package sipfront is the Call Router's SIP front end: stateless UDP, TCP
// and mutual-TLS listeners that answer INVITE with 302 (or a rejection),
// OPTIONS with 200, and absorb ACK.
//
// The Call Router is a redirect server (RFC 3261 §8.3, um-spec §2). It keeps
// no transaction objects: the To tag and the back end are derived from the
// request itself (Call-ID, From tag, branch), and the ACK for a non-2xx
// final response (RFC 3261 §17.1.1.3) is dropped. What it does keep is
// bounded and small: a fixed-size, keyed table of the answers given to UDP
// INVITEs of known gateways, so that a retransmission gets the very bytes
// its first copy got (answers.go); the INVITEs waiting for the router
// plugin, so that a CANCEL can end them; and per-source and global counts
// of stream connections with a bounded send queue each (limits.go,
// conn.go). Compared with a transaction-layer server this saves the
// per-transaction state (~100 KiB per call at 10k calls/s in sipgo) and two
// goroutine hops (docs/PERFORMANCE.md).
//
// Everything the front end sends is marked for QoS with the DSCP of
// sip.dscp (RFC 2474; CS3 by default, 0 unmarked): the UDP listeners'
// sockets, the TCP and TLS listeners and the connections they accept, and
// the connections it opens for the B2BUA, IPv4 and IPv6 (dscp.go). A
// reload that changes it marks the open sockets anew.
//
// Messages are parsed with sipgo's parser; sockets, framing and responses
// are ours.
package sipfront
