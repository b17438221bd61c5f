package sipfront

import "github.com/emiago/sipgo/sip"

// methodOther is the metric label of every method not in methodLabel's set.
const methodOther = "other"

// methodLabel maps a request method to a bounded metric label: the methods
// of RFC 3261 (INVITE, ACK, OPTIONS, BYE, CANCEL, REGISTER), 3262 (PRACK),
// 3265 (SUBSCRIBE, NOTIFY), 3311 (UPDATE), 3428 (MESSAGE), 3515 (REFER),
// 3903 (PUBLISH) and 6086 (INFO), and "other" for the rest. The method is
// any token a sender likes (RFC 3261 §25.1), so used raw it lets spoofed
// datagrams create label values, and series, without bound.
func methodLabel(m sip.RequestMethod) string {
	switch m {
	case sip.INVITE, sip.ACK, sip.OPTIONS, sip.BYE, sip.CANCEL, sip.REGISTER,
		sip.PRACK, sip.SUBSCRIBE, sip.NOTIFY, sip.UPDATE, sip.MESSAGE, sip.REFER,
		sip.PUBLISH, sip.INFO:
		return string(m)
	default:
		return methodOther
	}
}
