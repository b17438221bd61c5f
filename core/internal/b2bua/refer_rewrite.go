package b2bua

import (
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A REFER in ReferRewrite mode (R-SBC-7: "same for REFER") is relayed to
// the other side as in transparent mode (relay.go), but its Refer-To no
// longer names the target: it names us — our address on the leg of the
// transferee, the side that gets the REFER — with a user part that is a
// signed marker (redirect.go: the same key, layout, expiry and binding as
// a rewritten 3xx Contact) naming the original target. The transferee's
// new INVITE to it comes to us; Engine.Redirect proxies it to that
// target, topology hidden as every proxy call is. As in handle_locally
// only a target the routing knows is named — a back end of a pool or a
// gateway's address, over TLS on a secured dial plan — anything else gets
// 403 before anything is relayed; the marker can be called only from the
// transferee's address, only within Config.MarkerTTL, only during this
// boot. Both directions: the back end's REFER (the caller is the
// transferee; mode of the caller's gateway) and the caller's (the back end
// is; mode of the back end's pool).
//
// The new call is the transferee's call to the target: its caller-side
// profile is the transferee's peer (the caller's gateway, or the back
// end's pool), its other side the target's (the target's pool, or for a
// gateway its name: [sbc.peers.<gateway>], whose calls_per_second then
// counts these calls to it too); the dial plan and security stay the
// transferred call's.
//
// An attended transfer (Refer-To with ?Replaces=) is refused 501 with a
// Warning, as in handle_locally, and so is any other header embedded in
// the Refer-To: the Replaces names the transferor's dialog with us — a
// leg of another call of ours — which the target does not know. Passed on
// as it is, it would show the other side our leg's Call-ID and tags
// (R-SBC-1) and the target could only answer 481; done right, it has to be
// mapped onto the dialog that other call has with the target, and the
// transferee's INVITE sent to that dialog's peer, whoever the Refer-To
// names — a piece of its own. With 501 the transferor knows at once, and
// UM and most PBXs fall back to a blind transfer.

// maxReferTo bounds the Refer-To value rewritten: longer is no target a
// routing table names (a marker field holds 255 bytes).
const maxReferTo = 1024

// rewriteReferTo returns the Refer-To that a REFER from side from carries
// to the other side in ReferRewrite mode, or why it is refused.
func (c *call) rewriteReferTo(from Side, req *sip.Request) (string, *status) {
	refuse := func(code int, phrase, why string) (string, *status) {
		c.e.log.Info("transfer refused", "call_id", c.b.callID, "mode", ReferRewrite, "by", transferor(from), "status", code, "why", why)
		return "", &status{code, phrase, []string{c.e.warning(why)}}
	}
	hs := req.GetHeaders("Refer-To")
	if len(hs) != 1 {
		return refuse(400, "Bad Request", "a REFER needs exactly one Refer-To")
	}
	v := hs[0].Value()
	if len(v) > maxReferTo || !clean(v) {
		return refuse(400, "Bad Request", "malformed Refer-To")
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(v, &u, nil); err != nil {
		return refuse(400, "Bad Request", "malformed Refer-To")
	}
	switch {
	case slices.ContainsFunc(u.Headers.Keys(), func(k string) bool { return strings.EqualFold(k, "Replaces") }):
		return refuse(501, "Not Implemented", "attended transfer (Refer-To with Replaces) is not rewritten")
	case u.Headers.Length() > 0:
		return refuse(501, "Not Implemented", "Refer-To with embedded headers is not rewritten")
	}
	if m, ok := u.UriParams.Get("method"); ok && !strings.EqualFold(m, "INVITE") {
		return refuse(501, "Not Implemented", "Refer-To for another method than INVITE is not rewritten")
	}
	dest, ok := c.transferTarget(&u)
	if !ok {
		return refuse(403, "Forbidden", errNotTarget)
	}
	// The marker is the transferee's: its address, and our address on its
	// leg for the Refer-To.
	m := marker{kind: markRefer, expires: time.Now().Add(c.e.cfg.MarkerTTL),
		tp: dest.tp, addr: dest.dst.Addr(), port: dest.dst.Port(), host: dest.host, user: escapedUser(&u),
		dialPlan: c.target.DialPlan, pool: dest.pool, backend: dest.backend, security: c.target.Security}
	tp, local := c.a.in.Transport, c.a.in.Local
	if from == SideB {
		m.caller, m.gateway, m.maxGW = c.a.in.Source.Addr(), c.target.Gateway, c.target.MaxGatewayCalls
	} else {
		m.caller, m.gateway = c.b.dst.Addr(), c.target.Pool
		tp, local = c.b.tp, c.b.local
	}
	user, err := c.e.markers.mint(m)
	if err != nil {
		return refuse(400, "Bad Request", "Refer-To not rewritten: "+err.Error())
	}
	ct := markedContact(tp, local, user)
	c.e.log.Info("transfer rewritten", "call_id", c.b.callID, "by", transferor(from), "target", dest.dst.String(), "pool", dest.pool)
	return strings.TrimPrefix(ct, "Contact: "), nil
}
