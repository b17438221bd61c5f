package exchimport

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/umedge/umedge/core/sdk/router"
)

// Table paths of the config the mapping writes.
const (
	settingsPath = "plugins.umrouter.settings"
	poolName     = "um" // the one pool of the UM services of the export
)

// mapping turns the objects of one import into the config text.
type mapping struct {
	im *Importer
	w  *tomlWriter

	gateways   map[string]*gatewayOut // by lower-case name
	plans      map[string]*planOut
	keys       map[string]map[string]bool // TOML keys used, by table (unique)
	policies   map[string]*Object
	attendants []*Object
	huntGroups []*huntGroupOut
	mailboxes  []*mailboxOut
	services   []*Object
	routers    []*Object

	mailboxNames map[string]bool // lower-case names of the export's mailboxes, built when asked
	policyNames  map[string]bool // and of its mailbox policies

	reports []ObjectReport
	losses  map[string]*Loss
}

// gatewayOut is a UM IP gateway as it goes into gateways.<name>.
type gatewayOut struct {
	obj       *Object
	name      string
	addresses []string
	fqdn      string
	status    string
	defaulted bool
	became    []string
	unsecured bool // a hunt group leads to an unsecured plan
}

// planOut is a UM dial plan as it goes into dial_plans.<name>.
type planOut struct {
	obj       *Object
	name      string
	uriType   router.URIType
	digits    int
	security  router.Security
	defaults  map[string]bool   // keys that carry Exchange's default, not an exported value
	context   string            // PhoneContext, lower case
	access    []string          // access numbers, deduplicated
	accessSrc map[string]string // access key → property path it came from
}

// huntGroupOut is one pilot of a UM hunt group, in hunt_groups.<key>.
type huntGroupOut struct {
	obj           *Object
	key           string
	gateway, plan string
	pilot         string
}

// mailboxOut is one entry of mailboxes.<key>: a mailbox, or a further
// extension of one (secondaryOf).
type mailboxOut struct {
	key, display, plan string
	extension          string
	e164, sipUser      string
	secondaryOf        string
}

func newMapping(im *Importer) *mapping {
	return &mapping{im: im, w: newTOMLWriter(), gateways: map[string]*gatewayOut{}, plans: map[string]*planOut{},
		policies: map[string]*Object{}, losses: map[string]*Loss{}}
}

// identity is how an object is named in property paths and the report.
func identity(o *Object) string {
	for _, p := range []string{"Name", "Identity"} {
		if s := o.Str(p); s != "" {
			return lastName(s)
		}
	}
	return o.Source
}

func path(kind, id, prop string) string {
	p := kind + "[" + id + "]"
	if prop != "" {
		p += "." + prop
	}
	return p
}

func (m *mapping) warn(p, format string, args ...any) { m.im.warn(p, format, args...) }
func (m *mapping) fail(p, format string, args ...any) { m.im.fail(p, format, args...) }

func (m *mapping) report(kind, id, source, result string, became ...string) {
	if became == nil {
		became = []string{} // [] in JSON, like every other list
	}
	m.reports = append(m.reports, ObjectReport{Kind: kind, Identity: id, Source: source, Result: result, Became: became})
}

// lose records data that cannot be migrated.
func (m *mapping) lose(what, object, next string) {
	l := m.losses[what]
	if l == nil {
		l = &Loss{What: what, NextStep: next}
		m.losses[what] = l
	}
	l.Objects = append(l.Objects, object)
}

func (m *mapping) run() {
	m.dialPlans()
	m.gatewayObjects()
	m.huntGroupObjects()
	m.mailboxObjects()
	m.policyObjects()
	m.attendantObjects()
	m.serverObjects()
	if len(m.gateways) == 0 {
		m.fail("UMIPGateway", "the export holds no usable UM IP gateway: umedge needs at least one peer to take calls from")
	}
	if len(m.plans) == 0 {
		m.fail("UMDialPlan", "the export holds no usable UM dial plan")
	}
	m.render()
	m.im.rep.Objects = m.reports
	for _, l := range m.losses {
		m.im.rep.NotMigrated = append(m.im.rep.NotMigrated, *l)
	}
}

// unique indexes objects of one kind by lower-case name, warning about
// the second of two objects with one name (AD names are case-insensitive).
func (m *mapping) unique(kind string, each func(o *Object, id string)) {
	seen := map[string]string{}
	for _, o := range m.im.objs[kind] {
		id := identity(o)
		k := strings.ToLower(id)
		if first, dup := seen[k]; dup {
			m.warn(path(kind, id, ""), "listed twice (%s and %s): the second is ignored", first, o.Source)
			m.report(kind, id, o.Source, resultSkipped)
			continue
		}
		seen[k] = o.Source
		each(o, id)
	}
}

// boolOf reads an exported boolean.
func boolOf(s string) (value, ok bool) {
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "$") {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// enumOf maps an exported enum, by name or by number (the generic-enum
// form of a local session, docs/exchange-import.md §3), to its value.
func enumOf(s string, names map[string]string, numbers map[string]string) (string, bool) {
	s = strings.TrimSpace(s)
	for n, v := range names {
		if strings.EqualFold(n, s) {
			return v, true
		}
	}
	v, ok := numbers[s]
	return v, ok
}

func (m *mapping) dialPlans() {
	m.unique(KindDialPlan, func(o *Object, id string) {
		p := path(KindDialPlan, id, "")
		dp := &planOut{obj: o, name: id, defaults: map[string]bool{}, accessSrc: map[string]string{},
			context: strings.ToLower(o.Str("PhoneContext"))}
		uri, ok := m.planEnum(dp, p, "URIType", "uri_type", "TelExtn",
			map[string]string{"TelExtn": "TelExtn", "E164": "E164", "SipName": "SipName"}, map[string]string{"1": "TelExtn", "2": "E164", "3": "SipName"})
		if !ok {
			return
		}
		dp.uriType = router.URIType(uri)
		digits, err := strconv.Atoi(o.Str("NumberOfDigitsInExtension"))
		if err != nil || digits < router.MinExtensionDigits || digits > router.MaxExtensionDigits {
			m.warn(p+".NumberOfDigitsInExtension", "%q is not a number of digits from %d to %d: the dial plan is skipped",
				o.Str("NumberOfDigitsInExtension"), router.MinExtensionDigits, router.MaxExtensionDigits)
			m.report(KindDialPlan, id, o.Source, resultSkipped)
			return
		}
		dp.digits = digits
		sec, ok := m.planEnum(dp, p, "VoIPSecurity", "voip_security", "Unsecured",
			map[string]string{"Unsecured": "Unsecured", "SIPSecured": "SIPSecured", "Secured": "Secured"}, map[string]string{"1": "SIPSecured", "2": "Unsecured", "3": "Secured"})
		if !ok {
			return
		}
		dp.security = router.Security(sec)
		if dp.security == router.Secured {
			m.lose("SRTP media of Secured dial plans", p, "umedge's Call Router takes the calls over mutual TLS; SRTP is the UM back end's business and follows when its worker lands")
		}
		for i, n := range o.List("AccessTelephoneNumbers") {
			m.addAccess(dp, n, fmt.Sprintf("%s.AccessTelephoneNumbers[%d]", p, i))
		}
		for i, n := range o.List("PilotIdentifierList") {
			m.addAccess(dp, n, fmt.Sprintf("%s.PilotIdentifierList[%d]", p, i))
		}
		if b, _ := boolOf(o.Str("AutomaticSpeechRecognitionEnabled")); b {
			m.lose("speech recognition (ASR) and grammars", p, "umedge answers by touch-tone (DTMF) only; tell users that voice commands are gone")
		}
		for _, f := range []string{"WelcomeGreetingFilename", "InfoAnnouncementFilename"} {
			if name := o.Str(f); name != "" {
				m.lose("prompt audio", fmt.Sprintf("%s.%s = %s", p, f, name), promptStep)
			}
		}
		m.plans[strings.ToLower(id)] = dp
	})
}

// planEnum reads an enum property of a dial plan: Exchange's default when
// it is missing (said in the config and warned about), false when it has
// a value umedge does not know, which skips the plan.
func (m *mapping) planEnum(dp *planOut, p, prop, key, def string, names, numbers map[string]string) (string, bool) {
	o := dp.obj
	if o.Str(prop) == "" {
		dp.defaults[key] = true
		m.warn(p+"."+prop, "not in the export: imported as Exchange's default %s", def)
		return def, true
	}
	v, ok := enumOf(o.Str(prop), names, numbers)
	if !ok {
		m.warn(p+"."+prop, "%q is none of %s: the dial plan is skipped", o.Str(prop), strings.Join(sortedValues(names), ", "))
		m.report(KindDialPlan, dp.name, o.Source, resultSkipped)
	}
	return v, ok
}

func sortedValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

const promptStep = "copy the files from the dial plan's or auto attendant's prompt publishing point (the UM system mailbox; Export-UMPrompt in Exchange 2013+) and install them on the UM back end"

// normalNumber drops the spaces, dots, dashes and brackets people write
// into phone numbers ("+1 (555) 010-5000").
func normalNumber(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '(', ')', '-', '.':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// addAccess adds a subscriber-access number to the plan, in the form its
// URI type compares.
func (m *mapping) addAccess(dp *planOut, number, from string) {
	n := normalNumber(number)
	if dp.uriType == router.SIPName {
		n = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(number), "sip:"), "SIP:")
		if u, _, ok := strings.Cut(n, "@"); ok {
			n = u
		}
	}
	if n == "" {
		return
	}
	if !router.ValidAccessNumber(n, dp.uriType) {
		m.warn(from, "%q is not a %s number umedge can match: not imported as an access number", number, dp.uriType)
		return
	}
	k := router.AccessKey(n, dp.uriType)
	if _, dup := dp.accessSrc[k]; dup {
		return
	}
	dp.accessSrc[k] = from
	dp.access = append(dp.access, n)
}

func (m *mapping) gatewayObjects() {
	peers := map[string]string{} // address or lower-case FQDN → gateway
	m.unique(KindGateway, func(o *Object, id string) {
		p := path(KindGateway, id, "")
		if b, _ := boolOf(o.Str("Simulator")); b {
			m.report(KindGateway, id, o.Source, resultSkipped)
			m.warn(p+".Simulator", "a UM test simulator, not a peer: skipped")
			return
		}
		g := &gatewayOut{obj: o, name: id}
		addr := o.Str("Address")
		ip, err := netip.ParseAddr(addr)
		switch {
		case addr == "":
			m.warn(p+".Address", "empty: the gateway is skipped, umedge could not tell its calls from anyone's")
			m.report(KindGateway, id, o.Source, resultSkipped)
			return
		case err == nil:
			if ip.Zone() != "" {
				m.warn(p+".Address", "%s: the zone %%%s is dropped, umedge matches peers by address only", addr, ip.Zone())
				ip = ip.WithZone("")
			}
			g.addresses = []string{ip.Unmap().String()}
		case router.ValidDNSName(addr):
			g.fqdn = strings.TrimSuffix(addr, ".")
		default:
			m.warn(p+".Address", "%q is neither an IP address nor a DNS name: the gateway is skipped", addr)
			m.report(KindGateway, id, o.Source, resultSkipped)
			return
		}
		status, ok := enumOf(o.Str("Status"), map[string]string{"Enabled": "Enabled", "Disabled": "Disabled", "NoNewCalls": "NoNewCalls"},
			map[string]string{"0": "Enabled", "1": "Disabled", "2": "NoNewCalls"})
		switch {
		case o.Str("Status") == "":
			status, g.defaulted = "Enabled", true
			m.warn(p+".Status", "not in the export: imported as Exchange's default Enabled")
		case !ok:
			m.warn(p+".Status", "%q is not Enabled, Disabled or NoNewCalls: imported as Disabled, so that no call is taken by mistake", o.Str("Status"))
			status = "Disabled"
		}
		g.status = status
		if s := o.Str("GlobalCallRoutingScheme"); s != "" && !strings.EqualFold(s, "None") {
			m.lose("Lync/Skype for Business and Office 365 routing settings", p+".GlobalCallRoutingScheme = "+s, "not applied by umedge; route those calls on the SBC or the Lync pool")
		}
		peer := strings.ToLower(g.fqdn)
		if len(g.addresses) > 0 {
			peer = g.addresses[0]
		}
		if other, taken := peers[peer]; taken {
			m.fail(p+".Address", "%s is also the address of gateway %s: umedge could not tell their calls apart", addr, other)
			return
		}
		peers[peer] = id
		g.became = []string{settingsPath + ".gateways." + tomlKey(id)}
		m.gateways[strings.ToLower(id)] = g
	})
}

func (m *mapping) huntGroupObjects() {
	type gwPilot struct{ gw, pilot string }
	owner := map[gwPilot]string{}
	seenHG := map[string]string{}
	for _, o := range m.im.objs[KindHuntGroup] {
		gwRef := o.Str("UMIPGateway")
		ident := o.Str("Identity")
		name := o.Str("Name")
		if gwRef == "" {
			if g, _, ok := strings.Cut(ident, `\`); ok {
				gwRef = g
			}
		}
		if name == "" {
			name = lastName(ident)
		}
		gwName := lastName(gwRef)
		id := gwName + `\` + name
		p := path(KindHuntGroup, id, "")
		if first, dup := seenHG[strings.ToLower(id)]; dup {
			m.warn(p, "listed twice (%s and %s): the second is ignored", first, o.Source)
			m.report(KindHuntGroup, id, o.Source, resultSkipped)
			continue
		}
		seenHG[strings.ToLower(id)] = o.Source
		gw := m.gateways[strings.ToLower(gwName)]
		dp := m.plans[strings.ToLower(lastName(o.Str("UMDialPlan")))]
		switch {
		case gw == nil:
			m.warn(p+".UMIPGateway", "gateway %q is not in the export (or was skipped): the hunt group is skipped", gwRef)
		case dp == nil:
			m.warn(p+".UMDialPlan", "dial plan %q is not in the export (or was skipped): the hunt group is skipped", o.Str("UMDialPlan"))
		}
		if gw == nil || dp == nil {
			m.report(KindHuntGroup, id, o.Source, resultSkipped)
			continue
		}
		if (dp.security == router.SIPSecured || dp.security == router.Secured) && gw.fqdn == "" {
			m.warn(p+".UMDialPlan", "leads to %s dial plan %s, whose peers are known by TLS certificate, but gateway %s has the IP address %s and no FQDN (Exchange requires one): the hunt group is skipped",
				dp.security, dp.name, gw.name, gw.obj.Str("Address"))
			m.report(KindHuntGroup, id, o.Source, resultSkipped)
			continue
		}
		// PilotIdentifier is one string, yet New-UMHuntGroup's own example
		// gives "5551234,55555": take each.
		pilots := strings.Split(o.Str("PilotIdentifier"), ",")
		var became []string
		for i, pilot := range pilots {
			pilot = strings.TrimSpace(pilot)
			key := gw.name + "/" + name
			if len(pilots) > 1 {
				key = fmt.Sprintf("%s/%s (%s)", gw.name, name, pilot)
				if pilot == "" {
					continue
				}
			}
			if pilot != "" && !router.ValidSIPUser(pilot) {
				m.warn(fmt.Sprintf("%s.PilotIdentifier[%d]", p, i), "%q holds spaces or control characters, which no called number has: skipped", pilot)
				continue
			}
			k := gwPilot{strings.ToLower(gw.name), strings.ToLower(pilot)}
			if other, taken := owner[k]; taken {
				if pilot == "" {
					m.fail(p+".PilotIdentifier", "gateway %s already has the catch-all hunt group %s: Exchange would not have two", gw.name, other)
				} else {
					m.fail(p+".PilotIdentifier", "pilot %q of gateway %s is already used by hunt group %s", pilot, gw.name, other)
				}
				continue
			}
			owner[k] = id
			key = m.uniqueKey("hunt_groups", key)
			m.huntGroups = append(m.huntGroups, &huntGroupOut{obj: o, key: key, gateway: gw.name, plan: dp.name, pilot: pilot})
			became = append(became, settingsPath+".hunt_groups."+tomlKey(key))
			if dp.security == router.Unsecured {
				gw.unsecured = true
			}
			// A call to the pilot that was not diverted is answered with
			// subscriber access (Outlook Voice Access), as Exchange does.
			if pilot != "" {
				m.addAccess(dp, pilot, p+".PilotIdentifier")
				became = append(became, settingsPath+".dial_plans."+tomlKey(dp.name)+".access_numbers")
			}
		}
		result := resultImported
		if len(became) == 0 {
			result = resultSkipped
		}
		m.report(KindHuntGroup, id, o.Source, result, became...)
	}
	for _, g := range m.gateways {
		if g.unsecured && len(g.addresses) == 0 {
			m.warn(path(KindGateway, g.name, "Address"), "%s is a DNS name and the gateway leads to an unsecured dial plan: umedge knows UDP/TCP peers by source address, so add its addresses to gateways.%s.addresses or its calls are refused (403)", g.fqdn, tomlKey(g.name))
		}
	}
}

// mailboxObjects maps the UM-enabled mailboxes: the primary EUM proxy in
// the mailbox's dial plan is its extension, every other EUM proxy of a
// TelExtn plan a further entry that reaches the same mailbox.
func (m *mapping) mailboxObjects() {
	c := &claims{m: m, owner: map[claimKey]string{}}
	// The first plan by name owns a phone context two plans share, the
	// same on every run.
	contexts := map[string]*planOut{}
	for _, name := range slices.Sorted(maps.Keys(m.plans)) {
		if dp := m.plans[name]; dp.context != "" {
			if other, taken := contexts[dp.context]; taken {
				m.warn(path(KindDialPlan, name, "PhoneContext"), "phone context %q is also dial plan %s's; extensions in it go to %s",
					dp.context, other.name, other.name)
				continue
			}
			contexts[dp.context] = dp
		}
	}
	seen := map[string]string{}
	for _, mb := range m.im.mboxes {
		id := mb.email
		p := path(KindMailbox, id, "")
		for _, n := range mb.notes {
			m.warn(p+"."+n.Path, "%s", n.Message)
		}
		skip := func(prop, format string, args ...any) {
			m.warn(p+prop, format, args...)
			m.report(KindMailbox, id, mb.source, resultSkipped)
		}
		dp := m.plans[strings.ToLower(mb.plan)]
		if b, ok := boolOf(mb.enabled); ok && !b {
			skip(".UMEnabled", "false: not a UM user, skipped")
			continue
		}
		if first, dup := seen[strings.ToLower(id)]; dup {
			skip("", "listed twice (%s and %s): the second is ignored", first, mb.source)
			continue
		}
		seen[strings.ToLower(id)] = mb.source
		if dp == nil {
			skip(".UMDialPlan", "dial plan %q is not in the export (or was skipped): the mailbox is skipped", mb.plan)
			continue
		}
		m.checkPolicyRef(p+".UMMailboxPolicy", mb.policy)
		prop := ".EmailAddresses"
		if !mb.hasEmails {
			prop = ".Extensions"
		}
		out, extra := m.mailboxNumbers(mb, dp, p+prop, contexts)
		switch {
		case out.extension == "":
			skip(prop, "no EUM extension of %d digits in dial plan %s: the mailbox is skipped, as no call could reach it", dp.digits, dp.name)
			continue
		case dp.uriType == router.SIPName && out.sipUser == "":
			skip(".SIPResourceIdentifier", "empty in SipName dial plan %s, and no SIP EUM address: the mailbox is skipped", dp.name)
			continue
		case dp.uriType == router.E164 && out.e164 == "":
			skip(".SIPResourceIdentifier", "no E.164 number in E164 dial plan %s: the mailbox is skipped", dp.name)
			continue
		}
		ok := c.claim(dp, "extension", out.extension, id, p+prop, true)
		if out.sipUser != "" {
			ok = c.claim(dp, "SIP user", strings.ToLower(out.sipUser), id, p+".SIPResourceIdentifier", true) && ok
		}
		e164Prop := ".PhoneNumber"
		if dp.uriType == router.E164 {
			e164Prop = ".SIPResourceIdentifier"
		}
		if out.e164 != "" && !c.claim(dp, "E.164 number", out.e164, id, p+e164Prop, dp.uriType == router.E164) {
			out.e164 = "" // not its key outside E164 plans: the first holder keeps it, warned about
		}
		if !ok {
			m.report(KindMailbox, id, mb.source, resultSkipped)
			continue
		}
		became := []string{settingsPath + ".mailboxes." + tomlKey(out.key)}
		m.mailboxes = append(m.mailboxes, out)
		for _, x := range extra {
			if c.claim(m.plans[strings.ToLower(x.plan)], "extension", x.extension, id, p+prop, true) {
				m.mailboxes = append(m.mailboxes, x)
				became = append(became, settingsPath+".mailboxes."+tomlKey(x.key))
			}
		}
		m.report(KindMailbox, id, mb.source, resultImported, became...)
		m.mailboxLosses(mb, dp, out, p)
	}
	m.dropTakenAccessNumbers()
}

// mailboxNumbers reads a mailbox's numbers in its dial plan, and the
// further extensions that become entries of their own.
func (m *mapping) mailboxNumbers(mb *mailbox, dp *planOut, p string, contexts map[string]*planOut) (*mailboxOut, []*mailboxOut) {
	out := &mailboxOut{key: m.uniqueKey("mailboxes", mb.email), display: mb.display, plan: dp.name}
	var extra []*mailboxOut
	primaryExt := hasPrimaryIn(mb, dp)
	for _, e := range mb.proxies(dp.context) {
		ep := fmt.Sprintf("%s[%d]", p, e.index)
		target := dp
		if e.context != "" && !strings.EqualFold(e.context, dp.context) {
			if target = contexts[strings.ToLower(e.context)]; target == nil {
				m.warn(ep, "phone-context %s is the context of no dial plan in the export: %s not imported", e.context, e.address)
				continue
			}
		}
		switch {
		case strings.Contains(e.address, "@") || strings.HasPrefix(strings.ToLower(e.address), "sip:"):
			if target == dp && dp.uriType == router.SIPName && out.sipUser == "" {
				out.sipUser = sipUser(e.address)
			}
		case target.uriType == router.E164 && strings.HasPrefix(e.address, "+"):
			if target == dp && out.e164 == "" {
				out.e164 = e.address
			}
		case !fits(e.address, target.digits):
			m.warn(ep, "%q does not fit dial plan %s (%d digits): not imported", e.address, target.name, target.digits)
		case target == dp && out.extension == "" && (e.primary || !primaryExt):
			out.extension = e.address
		case target.uriType != router.TelExtn:
			m.lose("further extensions in E164 and SipName dial plans", ep+" = "+e.address,
				"umedge keys such mailboxes by their E.164 number or SIP address, one entry per mailbox; give the user one extension in that plan")
		default:
			extra = append(extra, &mailboxOut{key: m.uniqueKey("mailboxes", mb.email+"#"+e.address), plan: target.name, extension: e.address, secondaryOf: mb.email})
		}
	}
	if out.sipUser == "" && dp.uriType == router.SIPName && mb.sipURI != "" {
		out.sipUser = sipUser(mb.sipURI)
	}
	if n := normalNumber(mb.sipURI); out.e164 == "" && dp.uriType == router.E164 && strings.HasPrefix(n, "+") {
		out.e164 = n
	}
	if n := normalNumber(mb.phone); out.e164 == "" && len(n) > 1 && n[0] == '+' && router.PhoneNumber(n) && len(n) <= 16 {
		out.e164 = n
	}
	// What umrouter would refuse is left out here, warned about, so that
	// the config passes edged config check as written.
	if out.e164 != "" {
		if _, err := (router.NumberFormat{URIType: router.E164}).Key(out.e164); err != nil {
			m.warn(p, "E.164 number %q left out: %v", out.e164, err)
			out.e164 = ""
		}
	}
	if out.sipUser != "" && !router.ValidSIPUser(out.sipUser) {
		m.warn(p, "SIP user %q left out: not a SIP user part", out.sipUser)
		out.sipUser = ""
	}
	if out.extension == "" && dp.uriType == router.E164 && len(out.e164) > dp.digits {
		// In an E164 plan the extension is the number's last digits.
		out.extension = out.e164[len(out.e164)-dp.digits:]
		m.warn(p, "no EUM extension in E164 dial plan %s: %s, the last %d digits of %s, imported as the extension", dp.name, out.extension, dp.digits, out.e164)
	}
	return out, extra
}

// uniqueKey returns key, or key with " #2", " #3"… when another entry of
// the same table already has it: two export objects whose names map to
// one TOML key (a hunt group "X (6001)" and the pilot 6001 of "X", a
// mailbox named like another's secondary extension) must not make the
// config invalid TOML.
func (m *mapping) uniqueKey(table, key string) string {
	if m.keys == nil {
		m.keys = map[string]map[string]bool{}
	}
	taken := m.keys[table]
	if taken == nil {
		taken = map[string]bool{}
		m.keys[table] = taken
	}
	k := key
	for n := 2; taken[k]; n++ {
		k = fmt.Sprintf("%s #%d", key, n)
	}
	taken[k] = true
	return k
}

// fits reports whether s is an extension of the given length.
func fits(s string, digits int) bool {
	_, err := router.NumberFormat{URIType: router.TelExtn, Digits: digits}.Key(s)
	return err == nil
}

// claimKey is one number of one dial plan.
type claimKey struct{ plan, kind, key string }

// claims tracks which mailbox holds each number of each dial plan.
type claims struct {
	m     *mapping
	owner map[claimKey]string
}

// claim gives the number to who unless another mailbox holds it: then an
// error when the number is a key the plan looks mailboxes up by
// (required), a warning otherwise.
func (c *claims) claim(dp *planOut, kind, key, who, p string, required bool) bool {
	k := claimKey{strings.ToLower(dp.name), kind, key}
	other, taken := c.owner[k]
	switch {
	case !taken:
		c.owner[k] = who
		return true
	case required:
		c.m.fail(p, "%s %s of dial plan %s belongs to both %s and %s", kind, key, dp.name, other, who)
	default:
		c.m.warn(p, "%s %s is also the number of %s: not imported for this mailbox", kind, key, other)
	}
	return false
}

// mailboxLosses records what of an imported mailbox does not move.
func (m *mapping) mailboxLosses(mb *mailbox, dp *planOut, out *mailboxOut, p string) {
	if dp.uriType == router.SIPName {
		m.lose("calls to extensions in SipName dial plans", fmt.Sprintf("%s extension %s in %s", p, out.extension, dp.name),
			"umedge finds the mailboxes of a SipName dial plan by SIP user only, so a call to the extension is refused (404) where Exchange matched the EUM extension too; have the PBX or Lync send the SIP address")
	}
	m.lose("PINs", p, "Exchange keeps PINs encrypted and no cmdlet returns them: plan a PIN-reset mail run at cut-over, so that every user gets a new PIN by mail")
	m.lose("personal greetings, recorded names, call-answering rules and delivered voice mail", p,
		"they live in each user's mailbox, not in the UM configuration: users record greetings and names again by phone at their first logon; delivered voice mail stays in the mailbox as e-mail")
	m.perUser(mb, p)
}

// dropTakenAccessNumbers drops the access numbers that are also a
// mailbox's number in its plan (umrouter would refuse them): the mailbox
// wins, since the caller dialled it.
func (m *mapping) dropTakenAccessNumbers() {
	taken := map[claimKey]bool{}
	for _, x := range m.mailboxes {
		dp := m.plans[strings.ToLower(x.plan)]
		for _, n := range []string{x.extension, map[router.URIType]string{router.E164: x.e164, router.SIPName: x.sipUser}[dp.uriType]} {
			if n != "" {
				taken[claimKey{strings.ToLower(dp.name), "", router.AccessKey(n, dp.uriType)}] = true
			}
		}
	}
	for _, dp := range m.plans {
		dp.access = slices.DeleteFunc(dp.access, func(n string) bool {
			k := router.AccessKey(n, dp.uriType)
			if taken[claimKey{strings.ToLower(dp.name), "", k}] {
				m.warn(dp.accessSrc[k], "%s is also a mailbox's number in dial plan %s: not imported as an access number", n, dp.name)
				return true
			}
			return false
		})
	}
}

func hasPrimaryIn(mb *mailbox, dp *planOut) bool {
	for _, e := range mb.proxies(dp.context) {
		if e.primary && (e.context == "" || strings.EqualFold(e.context, dp.context)) && isExtension(e.address) {
			return true
		}
	}
	return false
}

// isExtension reports whether an EUM address is an extension: digits
// only, neither a SIP address nor an E.164 number.
func isExtension(a string) bool { return router.PhoneNumber(a) && !strings.HasPrefix(a, "+") }

// sipUser is the user part of a SIP address: umedge compares SIP names
// by user part (router.NumberFormat.Key).
func sipUser(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 4 && strings.EqualFold(s[:4], "sip:") {
		s = s[4:]
	}
	u, _, _ := strings.Cut(s, "@")
	return u
}

// perUser records the per-mailbox settings umedge does not apply yet,
// when they differ from Exchange's defaults.
func (m *mapping) perUser(mb *mailbox, p string) {
	const step = "umedge has no per-mailbox UM settings yet: set them again when the UM worker lands (they are listed here and in the report)"
	if b, _ := boolOf(mb.pinless); b {
		m.lose("per-mailbox UM settings", p+".PinlessAccessToVoiceMailEnabled = true", step)
	}
	if b, ok := boolOf(mb.anonymous); ok && !b {
		m.lose("per-mailbox UM settings", p+".AnonymousCallersCanLeaveMessages = false", step)
	}
	if mb.codec != "" {
		m.lose("per-mailbox UM settings", p+".CallAnsweringAudioCodec = "+mb.codec, step)
	}
}

// checkPolicyRef warns about a reference to a mailbox policy that is not
// in the export.
func (m *mapping) checkPolicyRef(p, ref string) {
	if ref == "" {
		return
	}
	if m.policyNames == nil {
		m.policyNames = map[string]bool{}
		for _, o := range m.im.objs[KindPolicy] {
			m.policyNames[strings.ToLower(identity(o))] = true
		}
	}
	if !m.policyNames[strings.ToLower(lastName(ref))] {
		m.warn(p, "mailbox policy %q is not in the export", ref)
	}
}

func (m *mapping) policyObjects() {
	m.unique(KindPolicy, func(o *Object, id string) {
		p := path(KindPolicy, id, "")
		if ref := o.Str("UMDialPlan"); ref != "" && m.plans[strings.ToLower(lastName(ref))] == nil {
			m.warn(p+".UMDialPlan", "dial plan %q is not in the export (or was skipped)", ref)
		}
		reset, resetErr := strconv.Atoi(o.Str("LogonFailuresBeforePINReset"))
		maxLogon, maxErr := strconv.Atoi(o.Str("MaxLogonAttempts"))
		if resetErr == nil && maxErr == nil && reset >= maxLogon {
			m.warn(p+".LogonFailuresBeforePINReset", "%d is not below MaxLogonAttempts %d, which Exchange requires: users are locked out before their PIN is reset", reset, maxLogon)
		}
		for _, f := range []string{"ProtectUnauthenticatedVoiceMail", "ProtectAuthenticatedVoiceMail"} {
			if v := o.Str(f); v != "" && !strings.EqualFold(v, "None") {
				m.lose("protected voice mail (IRM)", p+"."+f+" = "+v, "umedge does not protect voice mail with IRM; ask users with protected messages to play them in Exchange before it is switched off")
			}
		}
		if v := o.Str("FaxServerURI"); v != "" {
			m.lose("fax partner", p+".FaxServerURI = "+v, "route fax calls to the fax partner on the SBC or the PBX")
		}
		m.policies[strings.ToLower(id)] = o
		m.lose("mailbox policies", p, "umedge does not enforce PIN rules and feature switches yet: they are kept as comments at the end of the config for the UM worker")
		m.report(KindPolicy, id, o.Source, resultComments)
	})
}

func (m *mapping) attendantObjects() {
	m.unique(KindAutoAttendant, func(o *Object, id string) {
		p := path(KindAutoAttendant, id, "")
		if ref := o.Str("UMDialPlan"); ref != "" && m.plans[strings.ToLower(lastName(ref))] == nil {
			m.warn(p+".UMDialPlan", "dial plan %q is not in the export (or was skipped)", ref)
		}
		if b, _ := boolOf(o.Str("SpeechEnabled")); b {
			if o.Str("DTMFFallbackAutoAttendant") == "" {
				m.warn(p+".DTMFFallbackAutoAttendant", "a speech-enabled auto attendant without a DTMF fallback: callers who cannot speak to it have no way on")
			}
			m.lose("speech recognition (ASR) and grammars", p, "umedge answers by touch-tone (DTMF) only; tell users that voice commands are gone")
		}
		for _, f := range []string{"BusinessHoursWelcomeGreetingFilename", "BusinessHoursMainMenuCustomPromptFilename", "AfterHoursWelcomeGreetingFilename"} {
			if name := o.Str(f); name != "" {
				m.lose("prompt audio", fmt.Sprintf("%s.%s = %s", p, f, name), promptStep)
			}
		}
		for i, h := range o.List("HolidaySchedule") {
			if parts := strings.Split(h, ","); len(parts) > 1 && strings.TrimSpace(parts[1]) != "" {
				m.lose("prompt audio", fmt.Sprintf("%s.HolidaySchedule[%d] = %s", p, i, strings.TrimSpace(parts[1])), promptStep)
			}
		}
		for _, f := range []string{"BusinessHoursKeyMapping", "AfterHoursKeyMapping"} {
			m.keyMappings(o, fmt.Sprintf("%s.%s", p, f), o.List(f))
		}
		if ref := o.Str("DTMFFallbackAutoAttendant"); ref != "" && !m.isAttendant(ref) {
			m.warn(p+".DTMFFallbackAutoAttendant", "auto attendant %q is not in the export", ref)
		}
		pilots := strings.Join(o.List("PilotIdentifierList"), ", ")
		m.lose("auto attendants", fmt.Sprintf("%s (pilots %s)", p, pilots),
			"umedge has no auto attendant yet: calls to its pilots are refused (403 from a gateway without a matching hunt group, 404 through a catch-all); its settings are kept as comments at the end of the config; route the pilots to the PBX's own attendant meanwhile")
		m.attendants = append(m.attendants, o)
		m.report(KindAutoAttendant, id, o.Source, resultComments)
	})
}

// Fields of a key mapping (CustomMenuKeyMapping's string form): Key,
// Description, Extension, AutoAttendantName, PromptFileName, AsrPhrases,
// LeaveVoicemailFor, TransferToMailbox, AnnounceBusinessLocation,
// AnnounceBusinessHours; the input may stop after 5, 6 or 8 of them.
const (
	kmKey = iota
	kmDescription
	kmExtension
	kmAttendant
	kmPrompt
	kmASR
	kmVoicemailFor
	kmMailbox
	kmLocation
	kmHours
)

// keyMappings checks an auto attendant's menu (docs/exchange-import.md
// §6): keys 1–9 or "-" (timeout), each once, one action each (or only a
// prompt), and targets that exist. The prompts it plays are listed.
func (m *mapping) keyMappings(o *Object, p string, list []string) {
	seen := map[string]int{}
	for i, km := range list {
		ip := fmt.Sprintf("%s[%d]", p, i)
		f := strings.Split(km, ",")
		for j := range f {
			f[j] = strings.TrimSpace(f[j])
		}
		if n := len(f); n != 5 && n != 6 && n != 8 && n != 10 {
			m.warn(ip, "%q has %d comma-separated fields, not 5, 6, 8 or 10", km, n)
			continue
		}
		f = append(f, make([]string, 10-len(f))...)
		key := f[kmKey]
		if len(key) != 1 || (key[0] < '1' || key[0] > '9') && key != "-" {
			m.warn(ip, "key %q is not 1–9 or - (timeout)", key)
		} else if first, dup := seen[key]; dup {
			m.warn(ip, "key %s is also mapped by entry %d", key, first)
		} else {
			seen[key] = i
		}
		var actions []string
		for _, a := range []struct {
			field int
			name  string
		}{{kmExtension, "extension"}, {kmAttendant, "auto attendant"}, {kmVoicemailFor, "leave voice mail for"},
			{kmMailbox, "transfer to mailbox"}, {kmLocation, "business location"}, {kmHours, "business hours"}} {
			v := f[a.field]
			if b, ok := boolOf(v); v == "" || v == "0" || ok && !b {
				continue
			}
			actions = append(actions, a.name)
		}
		if len(actions) > 1 {
			m.warn(ip, "key %s has %d actions (%s): Exchange allows one", key, len(actions), strings.Join(actions, ", "))
		}
		if len(actions) == 0 && f[kmPrompt] == "" {
			m.warn(ip, "key %s has neither an action nor a prompt", key)
		}
		if ref := f[kmAttendant]; ref != "" && !m.isAttendant(ref) {
			m.warn(ip, "auto attendant %q is not in the export", ref)
		}
		for _, ref := range []string{f[kmVoicemailFor], f[kmMailbox]} {
			if ref != "" && !m.isMailbox(ref) {
				m.warn(ip, "mailbox %q is not in the export", ref)
			}
		}
		if f[kmPrompt] != "" {
			m.lose("prompt audio", ip+" = "+f[kmPrompt], promptStep)
		}
		if f[kmASR] != "" {
			m.lose("speech recognition (ASR) and grammars", ip+" = "+f[kmASR], "umedge answers by touch-tone (DTMF) only; tell users that voice commands are gone")
		}
	}
}

func (m *mapping) isAttendant(ref string) bool {
	return slices.ContainsFunc(m.im.objs[KindAutoAttendant], func(o *Object) bool { return strings.EqualFold(identity(o), lastName(ref)) })
}

// isMailbox reports whether ref names a mailbox of the export, by
// address, display name or identity.
func (m *mapping) isMailbox(ref string) bool {
	if m.mailboxNames == nil {
		m.mailboxNames = map[string]bool{}
		for _, mb := range m.im.mboxes {
			for _, n := range []string{mb.email, mb.display, lastName(mb.identity)} {
				if n != "" {
					m.mailboxNames[strings.ToLower(n)] = true
				}
			}
		}
	}
	return m.mailboxNames[strings.ToLower(strings.TrimSpace(ref))] || m.mailboxNames[strings.ToLower(lastName(ref))]
}

func (m *mapping) serverObjects() {
	m.unique(KindService, func(o *Object, id string) {
		m.services = append(m.services, o)
		p := path(KindService, id, "")
		m.checkPlanRefs(p+".DialPlans", o.List("DialPlans"))
		if v := o.Str("UMCertificateThumbprint"); v != "" {
			m.lose("TLS certificates", p+".UMCertificateThumbprint = "+v, certStep)
		}
		if v := o.Str("SIPAccessService"); v != "" {
			m.lose("Lync/Skype for Business and Office 365 routing settings", p+".SIPAccessService = "+v, "not applied by umedge; the Lync integration plugin takes the pool's address")
		}
	})
	m.unique(KindCallRouter, func(o *Object, id string) {
		m.routers = append(m.routers, o)
		m.checkPlanRefs(path(KindCallRouter, id, "DialPlans"), o.List("DialPlans"))
		if v := o.Str("UMCertificateThumbprint"); v != "" {
			m.lose("TLS certificates", path(KindCallRouter, id, "UMCertificateThumbprint")+" = "+v, certStep)
		}
	})
}

// checkPlanRefs warns about the dial plans of a list that are not in the
// export.
func (m *mapping) checkPlanRefs(p string, refs []string) {
	for i, ref := range refs {
		if m.plans[strings.ToLower(lastName(ref))] == nil {
			m.warn(fmt.Sprintf("%s[%d]", p, i), "dial plan %q is not in the export (or was skipped)", ref)
		}
	}
}

const certStep = "the export holds only the thumbprint: export the certificate with its key (Export-ExchangeCertificate -Thumbprint … -BinaryEncoded -Password …), convert it to PEM, set [sip.tls] cert, key and client_ca, then sip.mode"

// sort puts everything in the report in a stable order, whatever the
// order of the inputs and objects.
func (r *Report) sort() {
	kindOrder := map[string]int{KindGateway: 0, KindHuntGroup: 1, KindDialPlan: 2, KindPolicy: 3, KindAutoAttendant: 4, KindMailbox: 5, KindService: 6, KindCallRouter: 7}
	sort.SliceStable(r.Objects, func(i, j int) bool {
		a, b := r.Objects[i], r.Objects[j]
		if a.Kind != b.Kind {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		return a.Identity < b.Identity
	})
	byPath := func(l []Warning) {
		sort.SliceStable(l, func(i, j int) bool {
			if l[i].Path != l[j].Path {
				return l[i].Path < l[j].Path
			}
			return l[i].Message < l[j].Message
		})
	}
	byPath(r.Warnings)
	byPath(r.Errors)
	for i := range r.NotMigrated {
		slices.Sort(r.NotMigrated[i].Objects)
		r.NotMigrated[i].Objects = slices.Compact(r.NotMigrated[i].Objects)
	}
	sort.Slice(r.NotMigrated, func(i, j int) bool { return r.NotMigrated[i].What < r.NotMigrated[j].What })
}
