package exchimport

import (
	"strings"
)

// mailbox is a UM-enabled mailbox in the form the mapping needs: tens of
// thousands of them are held at once, so only these strings are kept.
type mailbox struct {
	source, email, display, identity string
	enabled                          string
	plan, policy                     string
	extensions                       []string // the Extensions property, used only without EmailAddresses
	eum                              []string // the EUM:/eum: proxy addresses, prefix kept
	hasEmails                        bool
	sipURI, phone                    string
	pinless, anonymous, codec        string
	notes                            []Warning
}

func newMailbox(o *Object) *mailbox {
	m := &mailbox{
		source:    o.Source,
		email:     o.Str("PrimarySmtpAddress"),
		display:   o.Str("DisplayName"),
		identity:  o.Str("Identity"),
		enabled:   o.Str("UMEnabled"),
		plan:      lastName(o.Str("UMDialPlan")),
		policy:    lastName(o.Str("UMMailboxPolicy")),
		sipURI:    o.Str("SIPResourceIdentifier"),
		phone:     o.Str("PhoneNumber"),
		pinless:   o.Str("PinlessAccessToVoiceMailEnabled"),
		anonymous: o.Str("AnonymousCallersCanLeaveMessages"),
		codec:     o.Str("CallAnsweringAudioCodec"),
		notes:     o.Notes,
	}
	if m.email == "" {
		m.email = o.Str("SamAccountName")
	}
	if m.email == "" {
		m.email = lastName(m.identity)
	}
	m.hasEmails = o.Has("EmailAddresses")
	for _, a := range o.List("EmailAddresses") {
		if len(a) > 4 && strings.EqualFold(a[:4], "eum:") {
			m.eum = append(m.eum, a)
		}
	}
	if !m.hasEmails {
		m.extensions = o.List("Extensions")
	}
	return m
}

// eumAddress is one EUM proxy address: the extension or SIP address
// before ";phone-context=", the context, and whether it is the primary
// (upper-case "EUM:").
type eumAddress struct {
	index   int // position among the EmailAddresses
	address string
	context string
	primary bool
}

// proxies returns the mailbox's EUM addresses; without EmailAddresses (a
// CSV without the column) they come from Extensions, whose items are
// "ext" or "ext (phone-context)".
func (m *mailbox) proxies(defaultContext string) []eumAddress {
	var out []eumAddress
	if m.hasEmails {
		for i, a := range m.eum {
			addr, params, _ := strings.Cut(a[4:], ";")
			ctx := ""
			for _, p := range strings.Split(params, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(p), "phone-context="); ok {
					ctx = v
				}
			}
			out = append(out, eumAddress{index: i, address: strings.TrimSpace(addr), context: ctx, primary: a[:4] == "EUM:"})
		}
		return out
	}
	for i, e := range m.extensions {
		addr, ctx := e, defaultContext
		if j := strings.Index(e, " ("); j >= 0 && strings.HasSuffix(e, ")") {
			addr, ctx = e[:j], e[j+2:len(e)-1]
		}
		out = append(out, eumAddress{index: i, address: strings.TrimSpace(addr), context: ctx, primary: i == 0})
	}
	return out
}

// lastName normalises a reference to an object (docs/exchange-import.md
// §4.2): a bare name, a canonical name (example.net/…/Name), a DN
// (CN=Name,CN=…) or Gateway\HuntGroup all become the last name.
func lastName(ref string) string {
	ref = strings.TrimSpace(ref)
	if len(ref) > 3 && strings.EqualFold(ref[:3], "CN=") {
		rdn := ref[3:]
		// The first RDN ends at the first comma that is not escaped.
		for i := 0; i < len(rdn); i++ {
			if rdn[i] == '\\' {
				i++
				continue
			}
			if rdn[i] == ',' {
				rdn = rdn[:i]
				break
			}
		}
		return strings.ReplaceAll(rdn, `\,`, ",")
	}
	if i := strings.LastIndexAny(ref, `/\`); i >= 0 {
		return ref[i+1:]
	}
	return ref
}
