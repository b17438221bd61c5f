package firewall

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
)

// parse loads a config from TOML text; it must be valid.
func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg
}

func ruleset(t *testing.T, text string) Ruleset {
	t.Helper()
	rs, err := FromConfig(parse(t, text))
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	return rs
}

func groupNames(rs Ruleset) []string {
	var out []string
	for _, g := range rs.Groups {
		out = append(out, g.Name)
	}
	return out
}

func TestFromConfig(t *testing.T) {
	a4 := netip.MustParseAddr("192.0.2.10")
	a6 := netip.MustParseAddr("2001:db8::10")
	other := netip.MustParseAddr("192.0.2.99")
	tests := []struct {
		name       string
		toml       string
		wantGroups []string
		pass       []Listener // Proto, Addr, PortMin = a packet that must be accepted
		drop       []Listener // ... and packets that no listener rule accepts
	}{
		{
			name: "tcp mode with udp on two addresses",
			toml: `[sip]
listen = ["192.0.2.10", "2001:db8::10"]
mode = "tcp"
tcp_port = 5070
[admin]
listen = "127.0.0.1:9061"`,
			wantGroups: []string{GroupCallRouter, GroupMedia, GroupAdmin},
			pass: []Listener{
				{Proto: TCP, Addr: a4, PortMin: 5070}, {Proto: UDP, Addr: a4, PortMin: 5070},
				{Proto: TCP, Addr: a6, PortMin: 5070}, {Proto: UDP, Addr: a6, PortMin: 5070},
				{Proto: UDP, Addr: other, PortMin: 16384}, {Proto: UDP, Addr: a6, PortMin: 32767},
				{Proto: TCP, Addr: netip.MustParseAddr("127.0.0.1"), PortMin: 9061},
			},
			drop: []Listener{
				{Proto: TCP, Addr: other, PortMin: 5070}, // not a listen address
				{Proto: TCP, Addr: a4, PortMin: 5061},    // no TLS in tcp mode
				{Proto: UDP, Addr: a4, PortMin: 16383},   // just below the media range
				{Proto: UDP, Addr: a4, PortMin: 32768},   // just above it
				{Proto: TCP, Addr: a4, PortMin: 16384},   // media is UDP only
				{Proto: TCP, Addr: a4, PortMin: 9061},    // admin is on loopback only
			},
		},
		{
			name: "tls mode, udp ignored, admin off",
			toml: `[sip]
listen = ["0.0.0.0"]
mode = "tls"
tls_port = 5071
[sip.tls]
cert = "testdata/server.pem"
key = "testdata/server-key.pem"
client_ca = "testdata/ca.pem"
[admin]
listen = ""`,
			wantGroups: []string{GroupCallRouter, GroupMedia},
			pass:       []Listener{{Proto: TCP, Addr: other, PortMin: 5071}},
			drop: []Listener{
				{Proto: TCP, Addr: a6, PortMin: 5071}, // 0.0.0.0 is IPv4 only
				{Proto: UDP, Addr: other, PortMin: 5060},
				{Proto: TCP, Addr: other, PortMin: 5060},
			},
		},
		{
			name: "the IPv6 wildcard is dual-stack",
			toml: `[sip]
listen = ["::"]
mode = "tcp"
udp = false
[admin]
listen = "localhost:9062"`,
			wantGroups: []string{GroupCallRouter, GroupMedia, GroupAdmin},
			pass: []Listener{
				{Proto: TCP, Addr: a4, PortMin: 5060}, {Proto: TCP, Addr: a6, PortMin: 5060},
				{Proto: TCP, Addr: netip.IPv6Loopback(), PortMin: 9062},
			},
			drop: []Listener{{Proto: UDP, Addr: a4, PortMin: 5060}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.toml, "testdata/") {
				tt.toml = withTestPKI(t, tt.toml)
			}
			rs := ruleset(t, tt.toml)
			if got := groupNames(rs); !slices.Equal(got, tt.wantGroups) {
				t.Errorf("groups = %v, want %v", got, tt.wantGroups)
			}
			for _, p := range tt.pass {
				if len(rs.Find(p.Proto, p.Addr, p.PortMin)) == 0 {
					t.Errorf("%s %s port %d is not accepted:\n%s", p.Proto, p.Addr, p.PortMin, rs)
				}
			}
			for _, p := range tt.drop {
				if got := rs.Find(p.Proto, p.Addr, p.PortMin); len(got) != 0 {
					t.Errorf("%s %s port %d is accepted by %+v", p.Proto, p.Addr, p.PortMin, got)
				}
			}
		})
	}
}

func TestStringGolden(t *testing.T) {
	rs := ruleset(t, `[sip]
listen = ["192.0.2.10", "2001:db8::10"]
mode = "tcp"
[admin]
listen = "127.0.0.1:9060"`)
	want := `table inet umedge {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lo" accept
`
	if got := rs.String(); !strings.HasPrefix(got, want) {
		t.Errorf("String() starts\n%s\nwant\n%s", got, want)
	}
	for _, line := range []string{
		"\t\ticmpv6 type nd-neighbor-solicit accept\n",
		"\t\tip daddr 192.0.2.10 tcp dport 5060 accept comment \"umedge call-router: sip.tcp_port\"\n",
		"\t\tip6 daddr 2001:db8::10 udp dport 5060 accept comment \"umedge call-router: sip.tcp_port\"\n",
		"\t\tudp dport 16384-32767 accept comment \"umedge media: media.port_min..port_max\"\n",
		"\t\tip daddr 127.0.0.1 tcp dport 9060 accept comment \"umedge admin: admin.listen\"\n",
	} {
		if !strings.Contains(rs.String(), line) {
			t.Errorf("String() lacks %q:\n%s", line, rs)
		}
	}
	if got, want := strings.Count(rs.String(), " accept")+strings.Count(rs.String(), " drop\n"), rs.Len(); got != want {
		t.Errorf("String() has %d rules, Len() = %d", got, want)
	}
}

// TestCraftedValues feeds the generator listen addresses that are valid
// for the config but carry text (an IPv6 zone) that would break or extend
// the printed ruleset if it were copied into it. The printed ruleset must
// hold only the address, and nft must accept it.
func TestCraftedValues(t *testing.T) {
	crafted := []string{
		`fe80::1%eth0" accept; flush ruleset; #`,
		"fe80::2%x}\n}\ntable inet evil {",
		`::ffff:192.0.2.7`, // IPv4-mapped: a rule for the IPv4 address
	}
	var quoted []string
	for _, c := range crafted {
		quoted = append(quoted, tomlString(c))
	}
	cfg := parse(t, "[sip]\nmode = \"tcp\"\nlisten = ["+strings.Join(quoted, ", ")+"]\n")
	rs, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := rs.String()
	for _, bad := range []string{"flush", "evil", "%", "eth0", "::ffff"} {
		if strings.Contains(out, bad) {
			t.Errorf("printed ruleset contains %q from the config:\n%s", bad, out)
		}
	}
	for _, want := range []string{"ip6 daddr fe80::1 tcp dport 5060", "ip6 daddr fe80::2 udp dport 5060", "ip daddr 192.0.2.7 tcp dport 5060"} {
		if !strings.Contains(out, want) {
			t.Errorf("printed ruleset lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "table ") != 1 || strings.Count(out, "{") != strings.Count(out, "}") {
		t.Errorf("structure changed:\n%s", out)
	}
	nftCheck(t, out)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// nftCheck runs `nft -c`: the printed ruleset must be one nft accepts.
func nftCheck(t *testing.T, ruleset string) {
	t.Helper()
	nft := needNft(t)
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nft, "-c", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("nft -c rejects the printed ruleset: %v\n%s\n%s", err, out, ruleset)
	}
}

// needNft returns the nft binary. It is a test dependency (nftables in the
// Makefile's TEST_DEBS), so a missing one fails; nft needs CAP_NET_ADMIN
// even to check a file, so a test not run as root is skipped.
func needNft(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nft needs root (CAP_NET_ADMIN), even with -c")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal("nft not found: install the Debian package nftables (make test-deps)")
	}
	return nft
}
