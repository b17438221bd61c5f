package exchimport

import (
	"fmt"
	"github.com/umedge/umedge/core/sdk/router"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// render writes the config: the core's [sip] and [plugin_host] from the
// call router, the umrouter plugin's tables from the UM objects, then, as
// comments, the Exchange settings umedge has no keys for yet.
func (m *mapping) render() {
	w := m.w
	w.comment(wrap(`umedge configuration imported from an Exchange UM export by "edged import exchange": `+m.summary()+".", 96))
	w.comment("")
	w.comment(wrap(`Lines marked "imported: default" carry a default the export did not set. Settings that need files `+
		`the export cannot carry (TLS certificates) are commented out. The import report lists every object, `+
		`what it became, each warning and what cannot be migrated.`, 96))
	w.comment("\nCheck it with:  edged config check FILE")
	m.renderSIP()
	w.header(false, "plugin_host", "plugin_host")
	w.kv("dir", "bin/plugins", "imported: default; the appliance keeps them in /usr/lib/umedge/plugins")
	w.kv("sha256sums", "bin/plugins.sha256", "imported: default; `make plugins` writes it")
	w.header(false, "plugins.*", "plugins", "umrouter")
	w.kv("kind", "router", "")
	w.kv("binary", "umedge-plugin-umrouter", "")
	w.kv("sha256", "", "pinned by plugin_host.sha256sums")
	m.renderGateways()
	m.renderHuntGroups()
	m.renderDialPlans()
	m.renderMailboxes()
	m.renderPools()
	m.renderComments()
}

func (m *mapping) summary() string {
	var parts []string
	for _, k := range []struct {
		kind, one, many string
	}{
		{KindGateway, "UM IP gateway", "UM IP gateways"}, {KindHuntGroup, "hunt group", "hunt groups"},
		{KindDialPlan, "dial plan", "dial plans"}, {KindPolicy, "mailbox policy", "mailbox policies"},
		{KindAutoAttendant, "auto attendant", "auto attendants"}, {KindMailbox, "mailbox", "mailboxes"},
		{KindService, "UM service", "UM services"}, {KindCallRouter, "call router", "call routers"},
	} {
		n := len(m.im.objs[k.kind])
		if k.kind == KindMailbox {
			n = len(m.im.mboxes)
		}
		switch n {
		case 0:
		case 1:
			parts = append(parts, "1 "+k.one)
		default:
			parts = append(parts, fmt.Sprintf("%d %s", n, k.many))
		}
	}
	if len(parts) == 0 {
		return "no UM objects"
	}
	return strings.Join(parts, ", ")
}

// renderSIP maps the call router (Get-UMCallRouterSettings) onto [sip].
func (m *mapping) renderSIP() {
	w := m.w
	var cr *Object
	if len(m.routers) > 0 {
		cr = m.routers[0]
	}
	str := func(name string) string {
		if cr == nil {
			return ""
		}
		return cr.Str(name)
	}
	w.header(false, "sip", "sip")
	w.kv("fqdn", "umedge.local", "imported: default; set the name the SIP certificate carries")
	id := ""
	if cr != nil {
		id = identity(cr)
		var became []string
		for _, k := range []string{"listen", "mode", "udp", "tcp_port", "tls_port"} {
			became = append(became, "sip."+k)
		}
		m.report(KindCallRouter, id, cr.Source, resultImported, became...)
		for _, other := range m.routers[1:] {
			m.warn(path(KindCallRouter, identity(other), ""), "umedge is one Call Router per config: only call router %s is imported", id)
			m.report(KindCallRouter, identity(other), other.Source, resultSkipped)
		}
	}
	switch fam := strings.ToLower(str("IPAddressFamily")); fam {
	case "ipv4only", "0":
		w.kv("listen", []string{"0.0.0.0"}, "IPAddressFamily IPv4Only: every IPv4 address; name the box's own")
	case "ipv6only", "any", "1", "2":
		w.kv("listen", []string{"::"}, "IPAddressFamily "+str("IPAddressFamily")+": every address; name the box's own")
	default:
		w.kv("listen", []string{"::"}, "imported: default; every address, name the box's own")
	}
	mode, known := enumOf(str("UMStartupMode"), map[string]string{"TCP": "tcp", "TLS": "tls", "Dual": "dual"},
		map[string]string{"0": "tcp", "1": "tls", "2": "dual"})
	switch {
	case cr == nil:
		w.kv("mode", "tcp", "imported: default")
	case !known:
		m.warn(path(KindCallRouter, id, "UMStartupMode"), "%q is not TCP, TLS or Dual: imported as tcp", str("UMStartupMode"))
		w.kv("mode", "tcp", "")
	case mode == "tcp":
		w.kv("mode", "tcp", "UMStartupMode TCP")
	default:
		m.warn(path(KindCallRouter, id, "UMStartupMode"), "%s needs the call router's TLS certificate, which the export does not hold (thumbprint %s): imported as tcp, with sip.mode = %q and [sip.tls] commented out",
			str("UMStartupMode"), orNone(str("UMCertificateThumbprint")), mode)
		w.comment(wrap(commentText(fmt.Sprintf("UMStartupMode %s needs the TLS files below, which the export cannot carry (certificate thumbprint %s). Put them in place, uncomment [sip.tls] and:",
			str("UMStartupMode"), orNone(str("UMCertificateThumbprint")))), 96))
		w.commentedKV("mode", mode)
		w.kv("mode", "tcp", "until the certificate is in place")
	}
	w.kv("udp", false, "Exchange UM takes SIP over TCP and TLS only")
	w.kv("tcp_port", m.port(cr, "SipTcpListeningPort", 5060), portNote(cr, "SipTcpListeningPort"))
	w.kv("tls_port", m.port(cr, "SipTlsListeningPort", 5061), portNote(cr, "SipTlsListeningPort"))
	if mode == "tls" || mode == "dual" {
		w.commentedHeader("sip.tls", "sip", "tls")
		w.commentedKV("cert", "/data/etc/umedge/tls/umedge.crt")
		w.commentedKV("key", "/data/etc/umedge/tls/umedge.key")
		w.commentedKV("client_ca", "/data/etc/umedge/tls/peers-ca.pem")
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func portNote(cr *Object, prop string) string {
	if cr == nil || cr.Str(prop) == "" {
		return "imported: default"
	}
	return prop
}

// port reads a port property, or returns def.
func (m *mapping) port(o *Object, prop string, def int) int {
	if o == nil || o.Str(prop) == "" {
		return def
	}
	n, err := strconv.Atoi(o.Str(prop))
	if err != nil || n < 1 || n > 65535 {
		m.warn(path(o.Kind, identity(o), prop), "%q is not a port from 1 to 65535: imported as %d", o.Str(prop), def)
		return def
	}
	return n
}

// exchangeComment writes, as comments, the listed properties that carry
// a value, for settings umedge has no key for yet.
func (m *mapping) exchangeComment(o *Object, props []string) {
	var lines []string
	for _, p := range props {
		v, ok := o.Props[p]
		if !ok || v.Nil {
			continue
		}
		if v.IsList {
			if len(v.List) == 0 {
				continue
			}
			q := make([]string, len(v.List))
			for i, s := range v.List {
				q[i] = strconv.Quote(commentText(s))
			}
			lines = append(lines, fmt.Sprintf("  %s = [%s]", p, strings.Join(q, ", ")))
			continue
		}
		t := strings.TrimSpace(v.Text)
		if t == "" {
			continue
		}
		if b, ok := boolOf(t); ok {
			t = strconv.FormatBool(b)
		} else if n, err := strconv.Atoi(t); err != nil || strconv.Itoa(n) != t {
			t = strconv.Quote(commentText(t)) // "011" stays a string: its zero matters
		}
		lines = append(lines, fmt.Sprintf("  %s = %s", p, t))
	}
	if len(lines) > 0 {
		m.w.comment("Exchange settings umedge has no key for yet:\n" + strings.Join(lines, "\n"))
	}
}

func mapValues[T any](m map[string]T) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func sortedBy[T any](list []T, key func(T) string) []T {
	out := append([]T(nil), list...)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

func (m *mapping) renderGateways() {
	for _, g := range sortedBy(mapValues(m.gateways), func(g *gatewayOut) string { return g.name }) {
		m.w.header(false, settingsPath+".gateways.*", "plugins", "umrouter", "settings", "gateways", g.name)
		if len(g.addresses) > 0 {
			m.w.kv("addresses", g.addresses, "Address")
		}
		if g.fqdn != "" {
			m.w.kv("fqdn", g.fqdn, "Address: over TLS the peer is known by this name in its certificate")
		}
		note := "Status"
		if g.defaulted {
			note = "imported: default"
		}
		m.w.kv("status", g.status, note)
		m.exchangeComment(g.obj, []string{"Port", "OutcallsAllowed", "MessageWaitingIndicatorAllowed", "IPAddressFamily", "DelayedSourcePartyInfoEnabled"})
		m.report(KindGateway, g.name, g.obj.Source, resultImported, g.became...)
	}
}

func (m *mapping) renderHuntGroups() {
	for _, h := range sortedBy(m.huntGroups, func(h *huntGroupOut) string { return h.key }) {
		m.w.header(false, settingsPath+".hunt_groups.*", "plugins", "umrouter", "settings", "hunt_groups", h.key)
		m.w.kv("gateway", h.gateway, "")
		note := "PilotIdentifier"
		if h.pilot == "" {
			note = "empty PilotIdentifier: catch-all for the gateway"
		}
		m.w.kv("pilot", h.pilot, note)
		m.w.kv("dial_plan", h.plan, "")
	}
}

func (m *mapping) renderDialPlans() {
	for _, dp := range sortedBy(mapValues(m.plans), func(dp *planOut) string { return dp.name }) {
		m.w.header(false, settingsPath+".dial_plans.*", "plugins", "umrouter", "settings", "dial_plans", dp.name)
		note := func(key, prop string) string {
			if dp.defaults[key] {
				return "imported: default"
			}
			return prop
		}
		m.w.kv("uri_type", string(dp.uriType), note("uri_type", "URIType"))
		m.w.kv("extension_digits", dp.digits, "NumberOfDigitsInExtension")
		m.w.kv("voip_security", string(dp.security), note("voip_security", "VoIPSecurity"))
		access := append([]string(nil), dp.access...)
		sort.Strings(access)
		m.w.kv("access_numbers", access, "hunt-group pilots, AccessTelephoneNumbers, PilotIdentifierList")
		m.w.kv("pool", poolName, "the UM services of the export")
		m.exchangeComment(dp.obj, without(dialPlanProps, "Name", "Identity", "URIType", "NumberOfDigitsInExtension", "VoIPSecurity"))
		m.report(KindDialPlan, dp.name, dp.obj.Source, resultImported, settingsPath+".dial_plans."+tomlKey(dp.name))
	}
}

func (m *mapping) renderMailboxes() {
	for _, x := range sortedBy(m.mailboxes, func(x *mailboxOut) string { return x.key }) {
		m.w.header(false, settingsPath+".mailboxes.*", "plugins", "umrouter", "settings", "mailboxes", x.key)
		if x.secondaryOf != "" {
			m.w.comment("a further EUM extension of " + commentText(x.secondaryOf))
		} else if x.display != "" {
			m.w.comment(commentText(x.display))
		}
		m.w.kv("extension", x.extension, "")
		m.w.kv("dial_plan", x.plan, "")
		if x.e164 != "" {
			m.w.kv("e164", x.e164, "")
		}
		if x.sipUser != "" {
			m.w.kv("sip_user", x.sipUser, "")
		}
	}
}

// renderPools writes one pool with a back end per UM service: Exchange
// 2013 and later redirect to any Mailbox server, umedge to any back end
// of the plan's pool.
func (m *mapping) renderPools() {
	m.w.header(false, settingsPath+".pools.*", "plugins", "umrouter", "settings", "pools", poolName)
	services := sortedBy(m.services, func(o *Object) string { return strings.ToLower(identity(o)) })
	if len(services) == 0 {
		m.warn("UMService", "the export holds no UM service (Get-UMService): the pool has one back end on this box, 127.0.0.1")
		m.w.header(true, settingsPath+".pools.*.backends", "plugins", "umrouter", "settings", "pools", poolName, "backends")
		m.w.kv("name", "local", "imported: default")
		m.w.kv("host", "127.0.0.1", "imported: default")
		return
	}
	for i, o := range services {
		id := identity(o)
		m.w.header(true, settingsPath+".pools.*.backends", "plugins", "umrouter", "settings", "pools", poolName, "backends")
		m.w.comment("UM service " + commentText(id) + ": point host at the umedge UM back end that replaces it")
		m.w.kv("name", strings.ToLower(id), "")
		host := strings.ToLower(id)
		if !router.ValidHost(host) {
			// A service name that is no DNS name: the operator sets the
			// host of the back end that replaces it anyway.
			m.w.comment("host " + commentText(host) + " is no DNS name; 127.0.0.1 until the back end is set")
			host = "127.0.0.1"
		}
		m.w.kv("host", host, "")
		m.w.kv("tcp_port", 5062, "UM service SIP/TCP")
		m.w.kv("tls_port", 5063, "UM service SIP/TLS")
		calls := 100
		note := "imported: default"
		if s := o.Str("MaxCallsAllowed"); strings.EqualFold(s, "Unlimited") {
			calls, note = 0, "MaxCallsAllowed Unlimited"
		} else if s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				m.warn(path(KindService, id, "MaxCallsAllowed"), "%q is not a number of calls: imported as 100", s)
			} else {
				calls, note = n, "MaxCallsAllowed"
			}
		}
		m.w.kv("max_calls_allowed", calls, note)
		m.report(KindService, id, o.Source, resultImported, fmt.Sprintf("%s.pools.%s.backends[%d]", settingsPath, poolName, i))
	}
}

// renderComments keeps the mailbox policies and auto attendants, which
// umedge has no tables for yet, as comments for the operator.
func (m *mapping) renderComments() {
	if len(m.policies) == 0 && len(m.attendants) == 0 && len(m.services) == 0 {
		return
	}
	m.w.blank()
	m.w.comment("Exchange objects umedge has no tables for yet, kept for the UM worker.")
	for _, o := range sortedBy(mapValues(m.policies), func(o *Object) string { return identity(o) }) {
		m.w.blank()
		m.w.comment("UM mailbox policy " + strconv.Quote(commentText(identity(o))))
		m.exchangeComment(o, without(policyProps, "Name", "Identity"))
	}
	for _, o := range sortedBy(m.attendants, func(o *Object) string { return identity(o) }) {
		m.w.blank()
		m.w.comment("UM auto attendant " + strconv.Quote(commentText(identity(o))))
		m.exchangeComment(o, without(autoAttendantProps, "Name"))
	}
	for _, o := range sortedBy(m.services, func(o *Object) string { return strings.ToLower(identity(o)) }) {
		m.w.blank()
		m.w.comment("UM service " + strconv.Quote(commentText(identity(o))))
		m.exchangeComment(o, []string{"UMStartupMode", "IPAddressFamily", "DialPlans", "UMCertificateThumbprint", "SIPAccessService"})
	}
}

// wrap breaks text into lines of at most width bytes, between words.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		switch {
		case n == 0:
		case n+1+len(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// without returns list less the given names.
func without(list []string, names ...string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(names, s) {
			out = append(out, s)
		}
	}
	return out
}
