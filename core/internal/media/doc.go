// Package media is the core's one media engine: a port pool, a few epoll
// event-loop workers over many non-blocking UDP sockets, and sessions of two
// legs whose packets end in a sink.
//
// # Packet path
//
// A Session has two legs, A (the caller's) and B (the callee's). Each leg owns
// an RTP socket on an even port and an RTCP socket on the next port, bound to
// the leg's local address, and a sink that takes the plain RTP and RTCP the
// leg received. By default a leg's sink is the other leg (relay); Attach puts
// a local terminator there instead (the UM worker's player and recorder), and
// Send is how a terminator puts media out of a leg. Relay is one sink kind,
// not a special case of the loop.
//
// All four sockets of a session live on one worker, so the session's mutex is
// only contended by the control path (Offer, Answer, Stats). The cost of a
// relay is the wake-up, not the copy, so a worker that served a small
// round rests until a millisecond has passed since it woke: a packet that
// finds it idle is served at once, the others wait for the next round
// (≤ 1 ms) and share its wake-up. A round serves every ready socket (it
// polls again while a wait comes back full) and one that served many
// datagrams is followed by no rest, so under load the rest does not cap
// the rate. Each ready socket gets one recvmmsg per round (a flooded port
// cannot hold the others up) and what a round produced for a socket goes
// out with one sendto or sendmmsg, from buffers the worker owns: a relayed
// packet costs no allocation. A port the pool has not handed out has no
// socket, or the socket of an idle pair kept bound for the next session
// and parked (pairpool.go: the engine's socket filter drops what is sent
// to it, or, where the filter cannot load, it is connected to itself), so
// that no datagram from outside reaches its queue: either way a flood
// there never wakes a worker; the kernel drops it and counts it
// (EngineStats.UnallocatedDrops).
//
// On the way in a leg demultiplexes STUN and RTP/RTCP (RFC 7983, RFC 5761),
// answers STUN binding requests (ICE-lite when the leg's offer carried ICE),
// decrypts SRTP with replay protection, latches the peer's source address
// (symmetric RTP, RFC 7362) and keeps RFC 3550 receiver statistics; a
// datagram larger than the read buffer (2048 bytes) is a stray, dropped,
// never relayed cut. On the way
// out it encrypts when it speaks SRTP and sends to the latched address, or to
// the address of the peer's SDP until a packet has been seen. RTCP is relayed
// end to end; a leg where the engine terminates SRTP also gets the engine's
// own receiver reports while its other side sends none (rtcp.go).
//
// # Latching (R-SBC-2, RFC 7362)
//
// A leg sends to the address of its peer's SDP until the first valid packet
// (RTP of a negotiated payload type, or SRTP that authenticates) arrives;
// from then on it sends where that packet came from, which is how a phone
// behind a NAT that announced its private address still gets audio. Each
// answer (the call's and each re-INVITE's) opens a learning window
// (Config.LatchWindow): inside it a packet from a new source with a new SSRC
// re-latches, and so does one from the address the peer's latest SDP names
// whatever its SSRC (a peer that moved by re-INVITE keeps its stream), and
// one from a new port of the latched address (a NAT that forgot the
// mapping while the peer was quiet). An
// answer naming another address (a transfer's new peer) drops the latch:
// media goes to the new SDP address at once, and the new peer is learnt
// from its first packet as at the start, except, inside the window, from
// the old peer's SSRC sent from anywhere but the new SDP address or a new
// port of the old source's address (the same peer behind its NAT,
// re-offering from a new socket).
// Outside it the latched source is fixed and everything else is
// counted as a stray and dropped, even while the peer is quiet, so nobody
// can take over a call on hold, with one exception at any time: a NAT that
// rebinds, i.e. a packet from a new port of the latched address that goes
// on with the latched stream (its SSRC, a sequence number at most 512
// ahead, counting what the kernel forwarded) once the latched port has
// been quiet for 100 ms (leg.rebound). On an SRTP leg an authenticated packet is
// the peer's wherever it comes from, so the latch follows it at any time;
// on an ICE-lite leg the nominated pair sets it. RTCP latches separately
// (a NAT may map RTP+1 anywhere), following the RTP peer's address: any
// port of it inside the window, after it only a report with the peer's
// SSRC (the other side's reports name the peer's SSRC and sequence, all a
// rebind asks).
//
// # Kernel fast path (Config.FastPath)
//
// With fast_path "auto" or "tc" the engine loads an eBPF program at TC
// ingress of the media interfaces (package fastpath). Once both legs of a
// session are latched and neither needs payload work (no SRTP terminated,
// no terminator attached, no DTMF dropped, no re-packetising, not on hold, the firewall's
// policy open for its ports), the session's forwarding is written into the
// program's map and the kernel relays its packets; the legs' sockets stay
// open and get whatever the program passes up (another source, STUN, an
// unnamed payload type), so latching works as above. Any change (an offer,
// a re-latch, Attach, Close) removes the entries at once. The kernel's
// counters and last-seen times are folded into the legs' counters and the
// inactivity clock whenever they are read (offload.go).
//
// # Send path (Config.SendPath, sendpath.go)
//
// With send_path "socket" (the default) every datagram userspace relays
// goes out through its leg's UDP socket. With "xdp" a datagram to a
// latched peer, IPv4 or IPv6, goes through an AF_XDP socket (package
// xdptx, copy mode) on the egress interface instead: the worker builds the
// Ethernet, IP and UDP headers itself (source the leg's address and port,
// the leg's DSCP in the TOS byte or traffic class, IPv4's header checksum
// and the UDP checksum computed, the latter mandatory over IPv6; an
// IPv4-mapped address is IPv4) in a UMEM frame and kicks the kernel once
// a round: one system call for the round's datagrams, where the sockets
// take one each. Measured over a veth the send costs 0.29–0.43× the socket path's
// CPU per packet, and the engine's whole CPU per relayed packet about half
// (docs/PERFORMANCE.md, "Send paths measured"); SRTP legs take
// it as well, since it is what leaves the worker that changes, not what it
// does to the payload. Receive is unchanged.
//
// The next hop (route, then the neighbour entry, ARP's or neighbour
// discovery's, by netlink in the engine's namespace) is looked up by the
// path's resolver, a goroutine of its own, never by a worker: a worker asks at a peer's first latched
// datagram and again every 5 s (every 1 s while it is unresolved), sends
// through the socket until the answer comes (and with its last answer
// while a refresh is out), and takes the answer in at its next datagram;
// a queue of 1,024 requests bounds a burst of new peers (the rest ask
// again later); an answer older than 10 s is not used even if its refresh
// was lost. The resolver also follows the namespace's neighbour, route and
// link changes (netlink subscriptions): a MAC it handed out that changes,
// fails or goes (a gateway pair's failover announced by a gratuitous ARP
// or an unsolicited neighbour advertisement), any IPv4 or IPv6 route
// change outside the local table (but IPv6's link-local fe80::/10 and
// multicast ff00::/8 routes, which come and go with every link's up and
// DAD), and a link's flags, MTU, MAC, master or state changing (not a
// bridge port's messages, statistics or wireless events, which would send
// every hop to the socket for nothing) make every hop resolved before go
// through the socket until looked up again
// (TestSendPathXDPNeighbourMACChange, IPv4 and IPv6: the new MAC at
// 0.2 ms, not 5 s later); a subscription lost (an overflow) or not made counts as a change
// of everything and is made again a second later, its caches dropped and
// the XSKs of links gone meanwhile closed; an interface deleted has its
// XSKs closed (by the resolver, without the locks workers take: a close
// waits for an RCU grace period). The XSK is one per interface and TX queue, the queue
// the worker's index modulo the TX queues in use as the driver says
// (ethtool channels; 1 when it does not say): an XSK bound past them
// sends nothing, silently, while its bind is refused only past the RX
// queues. Should kicks still take nothing from an XSK for 250 ms while
// frames wait and none is in flight (channels cut under it; backpressure
// always has frames in flight), the XSK counts as broken, what it held
// lost, and its workers share a lower queue until the link changes. Workers that land on
// one queue share its XSK under a lock; XSKs open (milliseconds: an 8 MiB
// UMEM) without the path's lock, which every worker takes each round.
// Everything else goes through the socket and is counted
// (Engine.SendPath): a link-local IPv6 peer or source (fe80::/10: the
// route look-up would need its zone, which only the socket has), a peer
// not latched yet, a route that is not unicast over Ethernet (loopback, a
// local address), a neighbour entry that is not confirmed (STALE
// included: the kernel confirms an entry only when its own output uses
// it, which the XSK bypasses, so the socket's send makes it probe, and
// the next look-up finds it confirmed), a datagram larger than the
// route's MTU (a locked metric, a tunnel's; a PMTU learnt from ICMP at
// the hop's next look-up, as no event tells it; the socket fragments it)
// or the device's, an egress link that cannot send (no carrier, its lower
// layer down, dormant: the device would drop the frame yet it would count
// as sent), no free UMEM frame or a full TX ring. A kick the kernel
// refuses (the interface went away) closes the XSK: what it held is
// counted lost (SendPathStats.Lost), the next datagram looks its hop up
// again (a new interface has a new index, so a new XSK), and that
// interface queue gets a new XSK 10 s later. The kick is once per worker
// round (and before any fallback of the same flush, which must not pass
// the frames queued before it); what a full send buffer leaves on the
// ring goes at the next round, the worker waiting at most 1 ms for it.
//
// What the frames skip on this host, and so the trade-offs of "xdp":
// the qdisc (no traffic shaping or tc filters on egress), netfilter's
// OUTPUT and POSTROUTING hooks (no firewall output rules, no SNAT or
// conntrack entries for them), the kernel's UDP output counters
// (/proc/net/snmp OutDatagrams, /proc/net/snmp6 Udp6OutDatagrams), and
// the packet taps: tcpdump on the
// sending host does not see them (xdptx's TestXSKBypass checks both; they
// are seen on the receiving side and by a mirror port). The neighbour
// layer is bypassed too (see above: entries are only read), as are
// policy-routing marks and SO_MARK (the look-up uses source and
// destination only). Each XSK pins 8 MiB of UMEM; it is opened on a thread
// in the engine's namespace (fastpath.InNS: in edged the thread it is on,
// no switch; an engine in another namespace, a test's or mediabench's,
// has a thread switched there and back). The resolver dumps
// an egress link's neighbour table of a family at most every 0.5 s, one
// dump serving every peer's look-up on it (IPv4's and IPv6's apart).
//
// # Policing (Config.Police, police.go)
//
// What each leg's peer may send is capped per stream in packets/s and
// kbit/s by a token bucket of the leg (one second of burst; RTCP in its
// own bucket of a quarter of the caps), applied after the source check:
// over the cap the peer's packet is dropped and counted (LegStats.Policed),
// a stranger's is a stray as before. A call on the kernel fast path is
// checked from the kernel's counters every PoliceInterval by one goroutine
// of the engine and leaves the kernel path for good when over.
//
// # Marking (Config.DSCP, dscp.go)
//
// What the engine sends carries the DSCP of its stream's media (audio and
// T.38 fax, or video) in the TOS byte (IPv6: traffic class), ECN
// not-ECT, on every send path: a leg's sockets are marked when opened
// (audio's) and again at the answer that says the stream is video (one
// setsockopt per socket and answer, never per packet; a pair kept idle
// goes back to audio's), the XDP path writes the socket's byte into its
// frames, and the kernel fast path's entry carries the byte its rewrite
// writes. So a call's marking does not change when it moves between the
// paths, and a peer's own marking is not carried across the border (the
// kernel path keeps an IPv6 packet's flow label, an identifier of the
// flow, not a marking). Early media on a video stream is marked as audio
// until the answer. Marking is best effort: sockets the kernel refuses it
// keep theirs and carry the call (one log line per engine).
// TestDSCPMarking, TestDSCPVideo and TestDSCPReinviteMediaChange read
// what the peers receive.
//
// # Packetisation (LegProfile.Ptime, repack.go)
//
// A leg whose profile has a ptime is asked for it (a=ptime in the SDP sent
// to it, and in the SDP sent to the other leg: what the relay sends from
// it) and gets its audio in packets of that length: the relay joins or
// splits PCMU, PCMA, G722 and G.729 from the other leg when the other
// side's packetisation differs, with its own sequence numbers, and sends a
// partial packet when it is due rather than wait for more. RTCP is not
// relayed on such a stream; each leg gets the engine's own reports.
//
// # Signalling
//
// Offer and Answer rewrite SDP (pion/sdp/v3) between the legs: the engine's
// own origin, addresses and ports, the security each leg's profile asks for
// (SDES keys generated per leg, RFC 4568; opportunistic SRTP, RFC 8643),
// codec filtering and order, ICE-lite and rtcp-mux per leg.
//
// # Streams: audio, video, T.38 fax
//
// Every m-line the engine can carry is anchored, each with its own port
// pair on each leg, up to maxStreams (4) per session: audio and video over
// an RTP profile (RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF), and image over
// udptl (T.38, RFC 3362, ITU-T T.38 Annex D). Others (RTP over TCP such as
// RTP/AVP/TCP, DTLS-SRTP, TCP/MSRP, DTLS/SCTP, UDP/TLS/UDPTL, an image
// proto spelled "UDPTL": SDP is case-significant, RFC 8866 §5) are declined
// with port 0, as are m-lines past the bound (counted,
// SessionStats.Declined; the streams a re-offer keeps count first, so new
// ones cannot push a live one out), so an offer of many m-lines costs at
// most the bound's pairs. The answer keeps the offer's m-lines in their
// order (RFC 3264 §8); a declined stream goes out declined. An answer must
// have exactly its offer's m-lines (RFC 3264 §6): one with more or fewer is
// bad SDP, and a stream it answers with another media type or transport
// (m=audio for an offered m=image, image over RTP/AVP) is declined; the
// offerer sees its own m-line back with port 0 for each declined stream,
// never the answerer's. A leg's sockets are of one family (its
// LegProfile.Local's): a stream whose SDP names the other (a per-m-line c=
// of IPv6 on an IPv4 leg) is declined, the primary not acceptable. pion/sdp
// refuses m=image and udptl outright, so parseSDP stands such m-lines in
// for ones it takes and puts them back.
//
// The primary stream is the first audio stream of the call's first answered
// offer (or its first anchored stream at all, for a call that starts as
// T.38 or video alone): each offer before the first answer picks it again,
// the first answer fixes it. Its legs are the session's own, made with it
// and kept to its end; SessionStats.Legs, Attach, Send, ICE-lite and the
// kernel fast path are about it. A stream's pairs are opened by the offer
// that adds it (or brings it back) and released when an answer declines it
// (port 0) or the offer fails (Reject); the primary's legs stay, off and
// without ports, until an offer brings the stream back. A stream that stays
// keeps its ports, also when a re-INVITE changes its m-line from audio to
// image (T.38 in place) and back. SessionStats.Streams lists every anchored
// stream (none when the primary audio is the only one). Each RTP stream is relayed as the primary is, with its own SRTP
// keys; codec lists (LegProfile.Codecs) apply to audio only; ICE is
// answered on the primary only (the others carry no candidates; STUN on
// them is answered without credentials).
//
// UDPTL is not RTP: a T.38 leg does no STUN/RTP/RTCP demultiplexing (its
// first byte is a sequence number's, 0 for the first 256 datagrams), no
// header or payload-type checks, no SRTP. Latching is by source address,
// with the rules of an RTP peer that keeps one SSRC: the first datagram
// latches; inside the learning window the address of the peer's SDP and a
// new port of the latched address re-latch; everything else is a stray,
// dropped and counted. Its +1 port is bound (the pool's even/odd pairs)
// but unused: what arrives there is a stray. A leg a terminator took
// (Attach) relays no fax: the terminator takes RTP. T.38 datagrams keep
// the call alive against the inactivity timeout. The kernel fast path carries RTP
// only (its program checks the payload type; a UDPTL datagram has none),
// so a fax stays in userspace. A leg whose profile is "secured only" does
// not carry T.38 (UDPTL cannot be SRTP, and that operator asked for no
// media in clear): offered beside audio the fax is declined and the
// gateway falls back to G.711; offered alone, the offer gets a 488 whose
// Warning says why.
package media
