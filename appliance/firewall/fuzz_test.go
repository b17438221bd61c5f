package firewall

import (
	"regexp"
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
			return // refused with an error: nothing printed
		}
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
