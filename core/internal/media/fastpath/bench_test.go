package fastpath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkProgram is the program's own cost per forwarded packet, as the
// kernel times it (BPF_PROG_TEST_RUN with a repeat count): the rewrite,
// the checksums, the counters and the route decision, without the
// transmit that follows a redirect. A second entry maps the rewritten
// packet back to the first one, so every repeat is a forward (until the
// TTL, 255 to start, runs out: hence repeats of 200).
func BenchmarkProgram(b *testing.B) {
	for _, c := range []struct {
		name     string
		fwd      bool
		from, to netip.AddrPort
		back     Entry
	}{
		{"IPv4/host does not forward", false, peer4, local4, Entry{Local: dst4, Peer: src4, Src: peer4, Dst: local4}},
		{"IPv6/host does not forward", false, peer6, local6, Entry{Local: dst6, Peer: src6, Src: peer6, Dst: local6}},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := newLab(&testing.T{}, c.fwd)
			c.back.PayloadTypes, c.back.Ifindex = ptMask(0), l.ifindex
			if err := l.p.Put(c.back); err != nil {
				b.Fatal(err)
			}
			pkt := udpPacket(c.from, c.to, rtp(0), pktOpts{ttl: 255})
			ctx := make([]byte, 192)                                   // struct __sk_buff
			binary.NativeEndian.PutUint32(ctx[36:], uint32(l.ifindex)) //nolint:gosec // ingress_ifindex
			binary.NativeEndian.PutUint32(ctx[40:], uint32(l.ifindex)) //nolint:gosec // ifindex
			const repeat = 250
			b.ResetTimer()
			start := time.Now()
			runs := 0
			for ; runs < b.N; runs += repeat {
				ret, err := l.p.Program().Run(&ebpf.RunOptions{Data: pkt, Context: ctx, Repeat: repeat})
				if err != nil {
					b.Fatal(err)
				}
				if ret != actRedirect {
					b.Fatalf("verdict %d, want TC_ACT_REDIRECT; reasons %v", ret, l.p.Reasons())
				}
			}
			// The syscall's own cost, spread over the repeats, is in the
			// figure: an upper bound on the program's.
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(runs), "ns/pkt")
			if f := l.reason("forwarded"); f < uint64(runs) {
				b.Fatalf("forwarded %d of %d", f, runs)
			}
		})
	}
}

// BenchmarkCounters is the cost of reading one entry's counters (a
// per-CPU map lookup, one syscall): what the engine pays per entry when it
// folds the kernel's counts in (Stats, the inactivity check, and a packet
// from a new port of a latched peer's address with its SSRC, leg.rebound).
func BenchmarkCounters(b *testing.B) {
	l := newLab(&testing.T{}, true)
	for b.Loop() {
		if _, err := l.p.Counters(local4); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadCounters is one poll of every entry's counters, the work
// of the pollers each second, at 4,000 entries (1,000 offloaded calls:
// RTP and RTCP of two legs): one Counters lookup per entry, or one
// Snapshot.
func BenchmarkReadCounters(b *testing.B) {
	l := newLab(&testing.T{}, true)
	const entries = 4000
	locals := make([]netip.AddrPort, entries)
	for i := range locals {
		locals[i] = netip.AddrPortFrom(local4.Addr(), uint16(10000+i)) //nolint:gosec // small
		if err := l.p.Put(Entry{Local: locals[i], Peer: peer4, Src: src4, Dst: dst4, PayloadTypes: ptMask(0), Ifindex: l.ifindex}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			for _, local := range locals {
				if _, err := l.p.Counters(local); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		snap := Snapshot{}
		for b.Loop() {
			if err := l.p.Snapshot(snap); err != nil {
				b.Fatal(err)
			}
		}
	})
}
