package firewall

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
)

// listenerLine is the only shape a listener rule may print in.
var listenerLine = regexp.MustCompile(`^\t\t(ip daddr [0-9.]+ |ip6 daddr [0-9a-f:.]+ |meta nfproto ipv4 )?(tcp|udp) dport [0-9]{1,5}(-[0-9]{1,5})? accept comment "umedge (call-router: sip\.(tcp|tls)_port|media: media\.port_min\.\.port_max|admin: admin\.listen)"$`)

// FuzzPrintedRuleset feeds arbitrary text to the config keys whose values
// reach the ruleset. Whatever the config accepts, the printed ruleset keeps
// its structure: the fixed head and base rules, then listener rules of one
// shape only, then the closing braces.
func FuzzPrintedRuleset(f *testing.F) {
	f.Add("192.0.2.10", "127.0.0.1:9060")
	f.Add(`fe80::1%eth0" accept; flush ruleset; #`, "[::1]:9060")
	f.Add("fe80::2%x}\n}\ntable inet evil {", "localhost:9061")
	f.Add("::ffff:192.0.2.7", "admin.example.net:9062")
	f.Add("::", ":9063")
	f.Add("192.0.2.10", "LocalHost:9064") // the config takes any case as loopback
	token := tokenFile(f)
	configOf := func(listen, admin string) string {
		return "[sip]\nmode = \"tcp\"\nlisten = [" + tomlString(listen) + "]\n" +
			"[admin]\nlisten = " + tomlString(admin) + "\nallow_remote = true\ntoken_file = " + tomlString(token) + "\n"
	}
	// The seeds must reach the ruleset, or the fuzzer judges nothing.
	for _, seed := range [][2]string{{"192.0.2.10", "127.0.0.1:9060"}, {"::", "admin.example.net:9062"}} {
		if _, err := config.Parse("seed.toml", []byte(configOf(seed[0], seed[1]))); err != nil {
			f.Fatalf("seed %v does not make a valid config: %v", seed, err)
		}
	}
	f.Fuzz(func(t *testing.T, listen, admin string) {
		cfg, err := config.Parse("fuzz.toml", []byte(configOf(listen, admin)))
		if err != nil {
			return // refused by the config: nothing reaches the ruleset
		}
		rs, err := FromConfig(cfg)
		if err != nil {
			// The init would run without a firewall (boot) or keep the
			// old one (reload): a config that validates must make one.
			t.Fatalf("FromConfig refuses a config that validates (listen %q, admin %q): %v", listen, admin, err)
		}
		checkAsked(t, cfg, rs)
		lines := strings.Split(strings.TrimSuffix(rs.String(), "\n"), "\n")
		head := 3 + len(baseRules)
		if len(lines) != head+rs.Len()-len(baseRules)+2 {
			t.Fatalf("%d lines for %d rules:\n%s", len(lines), rs.Len(), rs)
		}
		for _, l := range lines[head : len(lines)-2] {
			if !listenerLine.MatchString(l) {
				t.Fatalf("listener rule of an unexpected shape %q from listen %q, admin %q", l, listen, admin)
			}
		}
		if lines[len(lines)-2] != "\t}" || lines[len(lines)-1] != "}" {
			t.Fatalf("the ruleset does not end as it should:\n%s", rs)
		}
	})
}

// checkAsked is the fuzz's semantic oracle, made from the config alone:
// every listener rule opens exactly what a config key asks for (its
// protocol, its port or range, the listen address or, where the config
// says every address or a name, any), and every key's listener has its
// rule. A rule broader than asked (another port, a wildcard where an
// address was given) fails it.
func checkAsked(t *testing.T, cfg *config.Config, rs Ruleset) {
	t.Helper()
	type want struct {
		proto    Proto
		addr     string // "" = any address (family aside)
		min, max uint16
	}
	asked := map[string][]want{}
	addrOf := func(a netip.Addr) string {
		a = a.Unmap().WithZone("")
		if a.IsUnspecified() {
			return ""
		}
		return a.String()
	}
	for _, text := range cfg.SIP.Listen {
		a := netip.MustParseAddr(text) // validated
		if cfg.SIP.Mode.UsesTCP() {
			p := uint16(cfg.SIP.TCPPort)
			asked["sip.tcp_port"] = append(asked["sip.tcp_port"], want{TCP, addrOf(a), p, p})
			if cfg.SIP.UDP {
				asked["sip.tcp_port"] = append(asked["sip.tcp_port"], want{UDP, addrOf(a), p, p})
			}
		}
		if cfg.SIP.Mode.UsesTLS() {
			p := uint16(cfg.SIP.TLSPort)
			asked["sip.tls_port"] = append(asked["sip.tls_port"], want{TCP, addrOf(a), p, p})
		}
	}
	asked["media.port_min..port_max"] = []want{{UDP, "", uint16(cfg.Media.PortMin), uint16(cfg.Media.PortMax)}}
	if cfg.Admin.Listen != "" {
		host, portText, _ := net.SplitHostPort(cfg.Admin.Listen)
		port, _ := strconv.ParseUint(portText, 10, 16)
		p := uint16(port)
		switch a, err := netip.ParseAddr(host); {
		case err == nil:
			asked["admin.listen"] = []want{{TCP, addrOf(a), p, p}}
		case strings.EqualFold(host, "localhost"):
			asked["admin.listen"] = []want{{TCP, "127.0.0.1", p, p}, {TCP, "::1", p, p}}
		default:
			asked["admin.listen"] = []want{{TCP, "", p, p}}
		}
	}
	got := map[string][]want{}
	for _, g := range rs.Groups {
		for _, l := range g.Rules {
			w := want{l.Proto, "", l.PortMin, l.PortMax}
			if d, ok := l.daddr(); ok {
				w.addr = d.String()
			}
			if !slices.Contains(asked[l.Key], w) {
				t.Fatalf("rule %+v (%s) is not what %s asks for: %+v\nconfig sip.listen %q admin.listen %q", w, l.Key, l.Key, asked[l.Key], cfg.SIP.Listen, cfg.Admin.Listen)
			}
			got[l.Key] = append(got[l.Key], w)
		}
	}
	for key, ws := range asked {
		for _, w := range ws {
			if !slices.Contains(got[key], w) {
				t.Fatalf("%s asks for %+v and has no rule", key, w)
			}
		}
	}
}
