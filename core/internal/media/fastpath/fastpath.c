//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
//
// The media fast path: a TC ingress program that forwards the RTP and RTCP
// of latched, offloaded call legs in the kernel. A packet to a local media
// address and port that the engine offloaded, from the source the engine
// latched, leaves with the other leg's local address and port as its source
// and the other leg's peer as its destination, without waking userspace.
// Everything else (a miss, another source, a fragment, IP options, not UDP,
// a datagram too short for RTP/RTCP, lengths beyond the frame, IPv6 UDP
// without a checksum, STUN, a payload type the answer did not name, a TTL
// about to expire, no route or a packet above the egress MTU) goes on to
// the normal stack unchanged, so the engine still sees it. A forwarded
// packet leaves with the leg's own TOS byte (DSCP marking, ECN not-ECT),
// the one the engine's sockets send with: whatever the peer marked is
// not trusted across the border (an IPv6 flow label, which names the
// flow and marks nothing, is kept).
//
// Regenerate the object and its Go bindings with `make bpf` (Debian clang,
// llvm, libbpf-dev). GPL because bpf_fib_lookup is a GPL-only helper.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10

// fp_key names a local media socket: the address (IPv4 as ::ffff:a.b.c.d)
// and port a packet arrives at.
struct fp_key {
	__u8 addr[16];
	__be16 port;
	__u8 family; // 4 or 6
	__u8 pad;
};

#define FP_RTCP 1   // the entry is an RTCP socket's: any RTP-version packet passes
#define FP_NO_FIB 2 // set by the program: the FIB refused (FWD_DISABLED), go straight to the engine's interface

// fp_fwd is what becomes of a packet that matches: it must come from
// peer:peer_port and leaves from src:src_port to dst:dst_port. The map is
// per CPU: every CPU has its own copy of the rule (written together by the
// engine) followed by its own counters, so a packet costs one lookup and
// no shared cache line is written.
struct fp_fwd {
	__u8 peer[16];
	__u8 src[16];
	__u8 dst[16];
	__be16 peer_port;
	__be16 src_port;
	__be16 dst_port;
	__u8 flags;
	__u8 tos;          // the TOS byte (IPv6: traffic class) it leaves with: the leg's DSCP, ECN not-ECT, as the socket sends
	__u32 ifindex;     // egress interface the engine's route lookup chose
	__u64 pt_mask[2];  // RTP payload types the answer named: bit n = PT n
	// This CPU's counters: packets and UDP payload bytes forwarded, and
	// bpf_ktime_get_ns of the last one.
	__u64 packets;
	__u64 bytes;
	__u64 last_ns;
};

// The reasons a packet took one path or the other, counted per CPU.
enum {
	ST_FORWARDED,
	ST_MISS,
	ST_NOT_IP,
	ST_NOT_UDP,
	ST_FRAGMENT,
	ST_IP_OPTIONS,
	ST_SHORT,
	ST_WRONG_SOURCE,
	ST_NOT_RTP,
	ST_PAYLOAD_TYPE,
	ST_TTL,
	ST_NO_ROUTE,
	ST_TOO_BIG,
	ST_REWRITE,
	ST_NO_CHECKSUM,
	ST_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_key);
	__type(value, struct fp_fwd);
} fwd_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats_map SEC(".maps");

// pass counts reason and hands the packet on unchanged: TC_ACT_UNSPEC is
// TCX_NEXT, so programs after ours on the interface still see it (TC_ACT_OK
// would end the chain), and with cls_bpf the next filter or the stack.
static __always_inline int pass(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&stats_map, &reason);
	if (n)
		*n += 1;
	return TC_ACT_UNSPEC;
}

#define IP4_OFF ETH_HLEN
#define IP4_CSUM_OFF (IP4_OFF + 10)
#define IP4_TTL_OFF (IP4_OFF + 8)
#define IP4_ADDR_OFF (IP4_OFF + 12)
#define UDP4_OFF (IP4_OFF + 20)
#define IP6_OFF ETH_HLEN
#define IP6_HOP_OFF (IP6_OFF + 7)
#define IP6_ADDR_OFF (IP6_OFF + 8)
#define UDP6_OFF (IP6_OFF + 40)
#define UDP_CSUM 6

// payload_ok checks the first bytes of the UDP payload: RTP version 2, and
// on an RTP socket a payload type the answer named (RTCP multiplexed on the
// RTP port, RFC 5761 §4, passes).
static __always_inline int payload_ok(const struct fp_fwd *f, const __u8 *p, __u16 plen)
{
	if ((p[0] >> 6) != 2)
		return ST_NOT_RTP;
	if (f->flags & FP_RTCP)
		return plen >= 8 ? -1 : ST_SHORT;
	if (p[1] >= 192 && p[1] <= 223)
		return plen >= 8 ? -1 : ST_SHORT;
	if (plen < 12)
		return ST_SHORT;
	__u8 pt = p[1] & 0x7f;
	if (!((f->pt_mask[pt >> 6] >> (pt & 63)) & 1))
		return ST_PAYLOAD_TYPE;
	return -1;
}

static __always_inline void count(struct fp_fwd *f, __u16 plen)
{
	f->packets++;
	f->bytes += plen;
	f->last_ns = bpf_ktime_get_ns();
}

// The checksum arithmetic of RFC 1624, done here rather than by helpers:
// csum_add adds the 16-bit words of the 32-bit value v (as they lie in
// memory) to the running one's-complement sum s, csum_sub their
// complement; fold16 folds the carries. One's-complement sums are the same
// in either byte order, so memory-order words need no swapping.
static __always_inline __u64 csum_add(__u64 s, __u32 v)
{
	return s + (v & 0xffff) + (v >> 16);
}

static __always_inline __u64 csum_sub(__u64 s, __u32 v)
{
	return csum_add(s, ~v);
}

static __always_inline __u16 fold16(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

// redirect sends the rewritten packet on: through the FIB's next hop when
// the lookup resolved it, else through the kernel's neighbour code on the
// egress interface the engine chose (bpf_fib_lookup refuses with
// FWD_DISABLED on a host that does not forward, which a media relay need
// not: the packet is ours, not routed).
static __always_inline int redirect(struct bpf_fib_lookup *fib, int rc, __u32 ifindex)
{
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return bpf_redirect(fib->ifindex, 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, 0, 0, 0);
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

// route decides whether a packet of tot_len bytes can leave towards the
// rewritten destination: the FIB's answer, or for FWD_DISABLED the engine's
// interface and its MTU.
static __always_inline int route(struct __sk_buff *skb, struct bpf_fib_lookup *fib, struct fp_fwd *f, __u32 tot_len)
{
	// On a host that does not forward the lookup is refused every time:
	// the entry remembers, and later packets skip it.
	int rc = BPF_FIB_LKUP_RET_FWD_DISABLED;
	if (!(f->flags & FP_NO_FIB))
		rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return rc;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return -ST_TOO_BIG;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		if (f->ifindex) {
			f->flags |= FP_NO_FIB;
			__u32 mtu = 0;
			if (bpf_check_mtu(skb, f->ifindex, &mtu, 0, 0))
				return -ST_TOO_BIG;
			return rc;
		}
	}
	return -ST_NO_ROUTE;
}

static __always_inline int ipv4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP4_OFF;
	if ((void *)(ip + 1) > end)
		return pass(ST_SHORT);
	if (ip->version != 4)
		return pass(ST_NOT_IP);
	if (ip->ihl != 5)
		return pass(ST_IP_OPTIONS);
	if (ip->frag_off & bpf_htons(0x3fff)) // MF or an offset
		return pass(ST_FRAGMENT);
	if (ip->protocol != IPPROTO_UDP)
		return pass(ST_NOT_UDP);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *p = (void *)(udp + 1);
	if ((void *)(p + 2) > end)
		return pass(ST_SHORT);
	__u16 ulen = bpf_ntohs(udp->len), tot = bpf_ntohs(ip->tot_len);
	// Lengths that do not fit in each other or in the frame (which the
	// stack drops as truncated; Ethernet padding may follow them).
	if (ulen < 8 + 8 || tot < 20 + ulen || tot > skb->len - IP4_OFF)
		return pass(ST_SHORT);

	struct fp_key k = {.port = udp->dest, .family = 4};
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &ip->daddr, 4);
	struct fp_fwd *f = bpf_map_lookup_elem(&fwd_map, &k);
	if (!f)
		return pass(ST_MISS);
	__be32 peer, src, dst;
	__builtin_memcpy(&peer, &f->peer[12], 4);
	__builtin_memcpy(&src, &f->src[12], 4);
	__builtin_memcpy(&dst, &f->dst[12], 4);
	if (ip->saddr != peer || udp->source != f->peer_port)
		return pass(ST_WRONG_SOURCE);
	int why = payload_ok(f, p, ulen - 8);
	if (why >= 0)
		return pass(why);
	if (ip->ttl <= 1)
		return pass(ST_TTL);

	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.tos = ip->tos,
		.l4_protocol = IPPROTO_UDP,
		.sport = f->src_port,
		.dport = f->dst_port,
		.tot_len = tot,
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = src,
		.ipv4_dst = dst,
	};
	int rc = route(skb, &fib, f, tot);
	if (rc < 0)
		return pass(-rc);

	// The rewrite, written straight into the packet: MACs when the FIB
	// resolved the next hop, addresses, TTL - 1 and the IP header
	// checksum (RFC 1624; a header with a right checksum sums to the same
	// before and after, so a CHECKSUM_COMPLETE skb->csum stays right), the
	// ports. Then the UDP checksum by the kernel's helpers, which know how
	// the skb carries it (CHECKSUM_PARTIAL: only the pseudo-header part is
	// in the field; a zero IPv4 checksum stays zero) and keep skb->csum
	// right, except with no checksum: nothing then makes up for the new
	// ports, so they are added to skb->csum here (bpf_csum_update changes
	// only a CHECKSUM_COMPLETE one).
	__be32 os = ip->saddr, od = ip->daddr;
	__u16 ocsum = udp->check;
	__u32 oports = *(__u32 *)&udp->source, nports;
	__be16 np[2] = {f->src_port, f->dst_port};
	__builtin_memcpy(&nports, np, 4);
	__u16 ottl = *(__u16 *)&ip->ttl; // ttl and protocol
	__u16 otos = *(__u16 *)ip;       // version, IHL and TOS
	__u32 ifindex = f->ifindex;
	__u16 plen = ulen - 8;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(data, fib.dmac, ETH_ALEN);
		__builtin_memcpy(data + ETH_ALEN, fib.smac, ETH_ALEN);
	}
	ip->ttl--;
	ip->tos = f->tos;
	__u64 hc = (__u16)~ip->check;
	hc = csum_sub(csum_sub(hc, os), od);
	hc = csum_add(csum_add(hc, src), dst);
	hc = csum_add(csum_sub(hc, ottl), *(__u16 *)&ip->ttl);
	hc = csum_add(csum_sub(hc, otos), *(__u16 *)ip);
	ip->check = ~fold16(hc);
	ip->saddr = src;
	ip->daddr = dst;
	*(__u32 *)&udp->source = nports;
	__u32 da = fold16(csum_add(csum_add(csum_sub(csum_sub(0, os), od), src), dst));
	count(f, plen);
	if (bpf_l4_csum_replace(skb, UDP4_OFF + UDP_CSUM, 0, da, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	    bpf_l4_csum_replace(skb, UDP4_OFF + UDP_CSUM, oports, nports, 4 | BPF_F_MARK_MANGLED_0))
		// Not seen: the offsets are in the checked linear part and the
		// flags valid. The packet is rewritten by now, so unlike every
		// other pass it reaches the stack changed, addressed to the other
		// peer: dropped there (or routed, with a wrong UDP checksum, on a
		// host that forwards). Counted, so it would show.
		return pass(ST_REWRITE);
	if (!ocsum)
		bpf_csum_update(skb, fold16(csum_add(csum_sub(0, oports), nports)));
	pass(ST_FORWARDED);
	return redirect(&fib, rc, ifindex);
}

// same6 compares two IPv6 addresses (no memcmp in BPF).
static __always_inline int same6(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline int ipv6(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + IP6_OFF;
	if ((void *)(ip + 1) > end)
		return pass(ST_SHORT);
	if (ip->version != 6)
		return pass(ST_NOT_IP);
	if (ip->nexthdr == 44) // a fragment header
		return pass(ST_FRAGMENT);
	if (ip->nexthdr != IPPROTO_UDP) // other extension headers included
		return pass(ST_NOT_UDP);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *p = (void *)(udp + 1);
	if ((void *)(p + 2) > end)
		return pass(ST_SHORT);
	__u16 ulen = bpf_ntohs(udp->len), plen6 = bpf_ntohs(ip->payload_len);
	if (ulen < 8 + 8 || plen6 < ulen || 40 + plen6 > skb->len - IP6_OFF)
		return pass(ST_SHORT);
	if (!udp->check) // IPv6 has no UDP datagram without a checksum: the stack drops it (RFC 8200 §8.1)
		return pass(ST_NO_CHECKSUM);

	struct fp_key k = {.port = udp->dest, .family = 6};
	__builtin_memcpy(k.addr, &ip->daddr, 16);
	struct fp_fwd *f = bpf_map_lookup_elem(&fwd_map, &k);
	if (!f)
		return pass(ST_MISS);
	if (!same6(&ip->saddr, f->peer) || udp->source != f->peer_port)
		return pass(ST_WRONG_SOURCE);
	int why = payload_ok(f, p, ulen - 8);
	if (why >= 0)
		return pass(why);
	if (ip->hop_limit <= 1)
		return pass(ST_TTL);

	struct bpf_fib_lookup fib = {
		.family = AF_INET6,
		.l4_protocol = IPPROTO_UDP,
		.sport = f->src_port,
		.dport = f->dst_port,
		.tot_len = 40 + plen6,
		.ifindex = skb->ingress_ifindex,
	};
	__builtin_memcpy(fib.ipv6_src, f->src, 16);
	__builtin_memcpy(fib.ipv6_dst, f->dst, 16);
	int rc = route(skb, &fib, f, 40 + plen6);
	if (rc < 0)
		return pass(-rc);

	// The rewrite, as for IPv4 (no IP header checksum in IPv6). The
	// pseudo-header helper takes the address change off a
	// CHECKSUM_COMPLETE skb->csum as it does for IPv4, where the header
	// checksum makes up for the addresses; here nothing does (the addresses
	// are in the sum), so it is given back, and the changes of the hop
	// limit and the traffic class are added (BPF_F_IPV6, which skips the first, is Linux 6.16 and later).
	__u32 oports = *(__u32 *)&udp->source, nports;
	__be16 np[2] = {f->src_port, f->dst_port};
	__builtin_memcpy(&nports, np, 4);
	__u64 sum = 0;
	const __u32 *oa = (const __u32 *)&ip->saddr, *ns = (const __u32 *)f->src, *nd = (const __u32 *)f->dst;
#pragma unroll
	for (int i = 0; i < 8; i++) // saddr and daddr lie back to back
		sum = csum_sub(sum, oa[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		sum = csum_add(csum_add(sum, ns[i]), nd[i]);
	__u32 da = fold16(sum);
	__u32 ifindex = f->ifindex;
	__u16 plen = ulen - 8;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(data, fib.dmac, ETH_ALEN);
		__builtin_memcpy(data + ETH_ALEN, fib.smac, ETH_ALEN);
	}
	__u16 ohop = *(__u16 *)&ip->nexthdr; // next header and hop limit
	__u16 otc = *(__u16 *)ip;            // version, traffic class, the flow label's top bits
	ip->hop_limit--;
	__u8 *vtc = (__u8 *)ip;
	vtc[0] = 0x60 | (f->tos >> 4);
	vtc[1] = (__u8)(f->tos << 4) | (vtc[1] & 0x0f);
	__u32 dcsum = fold16(csum_add(csum_sub(csum_add(csum_sub(da, ohop), *(__u16 *)&ip->nexthdr), otc), *(__u16 *)ip));
	__builtin_memcpy(&ip->saddr, f->src, 16);
	__builtin_memcpy(&ip->daddr, f->dst, 16);
	*(__u32 *)&udp->source = nports;
	count(f, plen);
	if (bpf_l4_csum_replace(skb, UDP6_OFF + UDP_CSUM, 0, da, BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, UDP6_OFF + UDP_CSUM, oports, nports, 4))
		return pass(ST_REWRITE);
	bpf_csum_update(skb, dcsum);
	pass(ST_FORWARDED);
	return redirect(&fib, rc, ifindex);
}

SEC("tc")
int umedge_fastpath(struct __sk_buff *skb)
{
	// A packet whose headers are not in the linear part (rare on the
	// receive path) is made so; an IPv6 RTP header is the longest we read.
	// (A packet shorter than that fails the pull and is passed below.)
	const __u32 need = ETH_HLEN + 40 + 8 + 2;
	if ((void *)(long)skb->data + need > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, need);
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return pass(ST_NOT_IP);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ipv4(skb);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ipv6(skb);
	return pass(ST_NOT_IP);
}

char _license[] SEC("license") = "GPL";
