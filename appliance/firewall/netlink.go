package firewall

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// replyTimeout bounds the wait for the kernel's answers to a batch.
// nftables.Conn.Flush waits for one acknowledgement per message, but a
// kernel without nf_tables (a module that is not loaded) answers the
// whole batch with one error: without a deadline the init hung there.
const replyTimeout = 10 * time.Second

func deadline(c *netlink.Conn) error { return c.SetDeadline(time.Now().Add(replyTimeout)) }

// Apply installs rs as table inet umedge in one netlink transaction: the
// old table, if any, is deleted and the new one created in the same batch,
// so the box is never without its firewall nor with half of one. opts go to
// nftables.New (a test passes nftables.WithNetNSFd).
func Apply(rs Ruleset, opts ...nftables.ConnOption) error {
	c, err := nftables.New(append(opts, nftables.WithSockOptions(deadline))...)
	if err != nil {
		return fmt.Errorf("firewall: open netlink: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	c.AddTable(t) // so the delete below succeeds on the first run
	c.DelTable(t)
	c.AddTable(t)
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{
		Name:     Chain,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &drop,
	})
	for _, r := range baseRules {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs()})
	}
	for _, g := range rs.Groups {
		for _, l := range g.Rules {
			c.AddRule(&nftables.Rule{
				Table:    t,
				Chain:    ch,
				Exprs:    append(l.exprs(), accept()),
				UserData: userdata.AppendString(nil, userdata.TypeComment, l.comment(g)),
			})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: install table inet %s (%d rules): %w", Table, rs.Len(), err)
	}
	return nil
}

// Remove deletes table inet umedge; it is not an error if there is none.
func Remove(opts ...nftables.ConnOption) error {
	c, err := nftables.New(append(opts, nftables.WithSockOptions(deadline))...)
	if err != nil {
		return fmt.Errorf("firewall: open netlink: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: delete table inet %s: %w", Table, err)
	}
	return nil
}

// The expressions below are the ones nft itself generates for the syntax
// that String prints (nft --debug=netlink), so that `nft list table` of an
// applied ruleset reads back as String.

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

func (r baseRule) exprs() []expr.Any {
	switch r.kind {
	case ctEstablished:
		return append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())
	case ctInvalid:
		return append(ctState(expr.CtStateBitINVALID), &expr.Verdict{Kind: expr.VerdictDrop})
	case loopback:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			accept(),
		}
	case icmp4:
		return append(icmp(unix.NFPROTO_IPV4, unix.IPPROTO_ICMP, r.icmpType), accept())
	default:
		return append(icmp(unix.NFPROTO_IPV6, unix.IPPROTO_ICMPV6, r.icmpType), accept())
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func icmp(family, proto, typ uint8) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
	}
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func (l Listener) exprs() []expr.Any {
	var out []expr.Any
	nfproto := func(f uint8) {
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f}})
	}
	if a, ok := l.daddr(); ok {
		if a.Is4() {
			nfproto(unix.NFPROTO_IPV4)
			out = append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4})
		} else {
			nfproto(unix.NFPROTO_IPV6)
			out = append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16})
		}
		out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()})
	} else if l.family() == 4 {
		nfproto(unix.NFPROTO_IPV4)
	}
	out = append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(l.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if l.PortMin == l.PortMax {
		out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(l.PortMin)})
	} else {
		out = append(out,
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(l.PortMin)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(l.PortMax)})
	}
	return out
}
