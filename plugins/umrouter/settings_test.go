package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// problemsOf configures a new Router with data and returns its problems as
// "path: message" lines; it fails the test unless the error is a
// *base.ConfigError.
func problemsOf(t *testing.T, data []byte) []string {
	t.Helper()
	err := New().Configure(t.Context(), data)
	if err == nil {
		return nil
	}
	var ce *base.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Configure() error = %v (%T), want a *base.ConfigError", err, err)
	}
	lines := make([]string, 0, len(ce.Problems))
	for _, p := range ce.Problems {
		lines = append(lines, p.Path+": "+p.Message)
	}
	return lines
}

// TestConfigureGolden configures every testdata/*.toml whose name starts
// with "bad" and compares the full problem list with testdata/<name>.golden.
func TestConfigureGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/bad*.toml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(problemsOf(t, data), "\n") + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems of %s differ from %s:\n--- got\n%s--- want\n%s", file, golden, got, want)
			}
		})
	}
}

func TestConfigureProblems(t *testing.T) {
	// valid is a minimal valid table; each case appends TOML to it.
	const valid = `
[gateways.lab]
addresses = ["127.0.0.1"]
[hunt_groups.lab]
gateway = "lab"
dial_plan = "lab"
[dial_plans.lab]
extension_digits = 4
access_numbers = ["5000"]
pool = "local"
[pools.local]
[[pools.local.backends]]
name = "um1"
host = "127.0.0.1"
`
	tests := []struct {
		name string
		give string // the whole table; "+" prefix = appended to valid
		want []string
	}{
		{name: "minimal table is valid", give: "+"},
		{
			name: "empty table",
			give: "",
			want: []string{
				"dial_plans: at least one dial plan is required",
				"gateways: at least one gateway is required",
				"pools: at least one pool is required",
			},
		},
		{
			name: "not toml",
			give: "[gateways\n",
			want: []string{`: invalid toml at line 2: expected '.' or ']' to end table name, but got '\n' instead`},
		},
		{
			name: "wrong type of a section",
			give: "gateways = 3\ndial_plans = []\npools = \"x\"",
			want: []string{
				"dial_plans: must be a table, not an array",
				"gateways: must be a table, not an integer",
				"pools: must be a table, not a string",
			},
		},
		{
			name: "duplicate catch-all",
			give: "+[hunt_groups.more]\ngateway = \"lab\"\ndial_plan = \"lab\"\n",
			want: []string{"hunt_groups.more.pilot: gateway lab already has the catch-all hunt group lab"},
		},
		{
			name: "duplicate pilot in any case",
			give: "+[hunt_groups.x]\ngateway = \"lab\"\npilot = \"Vm\"\ndial_plan = \"lab\"\n[hunt_groups.y]\ngateway = \"lab\"\npilot = \"vM\"\ndial_plan = \"lab\"\n",
			want: []string{`hunt_groups.y.pilot: pilot "vM" of gateway lab is already used by hunt group x`},
		},
		{
			name: "same pilot on two gateways is fine",
			give: "+[gateways.b]\naddresses = [\"::1\"]\n[hunt_groups.x]\ngateway = \"lab\"\npilot = \"5000\"\ndial_plan = \"lab\"\n[hunt_groups.y]\ngateway = \"b\"\npilot = \"5000\"\ndial_plan = \"lab\"\n",
		},
		{
			name: "address on two gateways",
			give: "+[gateways.b]\naddresses = [\"127.0.0.1\"]\n",
			want: []string{"gateways.lab.addresses[0]: 127.0.0.1 is already an address of gateway b"},
		},
		{
			name: "extension collides with access number",
			give: "+[mailboxes.m]\nextension = \"5000\"\ndial_plan = \"lab\"\n",
			want: []string{"mailboxes.m.extension: 5000 is an access number of dial plan lab"},
		},
		{
			name: "same extension in two dial plans is fine",
			give: "+[dial_plans.b]\nextension_digits = 4\npool = \"local\"\n[mailboxes.m]\nextension = \"1001\"\ndial_plan = \"lab\"\n[mailboxes.n]\nextension = \"1001\"\ndial_plan = \"b\"\n",
		},
		{
			name: "sip user required and unique in a SipName plan",
			give: "+[dial_plans.s]\nuri_type = \"SipName\"\nextension_digits = 4\npool = \"local\"\n" +
				"[mailboxes.m]\nextension = \"1001\"\ndial_plan = \"s\"\n" +
				"[mailboxes.n]\nextension = \"1002\"\ndial_plan = \"s\"\nsip_user = \"Bob\"\n" +
				"[mailboxes.o]\nextension = \"1003\"\ndial_plan = \"s\"\nsip_user = \"bob\"\n",
			want: []string{
				"mailboxes.m.sip_user: is required in SipName dial plan s",
				"mailboxes.o.sip_user: bob is already used by mailbox n in dial plan s",
			},
		},
		{
			name: "pool without backends",
			give: "+[pools.spare]\noptions_interval = \"5s\"\n",
			want: []string{"pools.spare.backends: at least one backend is required"},
		},
		{
			name: "quoted names keep their quotes in paths",
			give: "+[gateways.\"a.b\"]\naddresses = [\"10.0.0.1\"]\nstatus = \"Off\"\n",
			want: []string{`gateways."a.b".status: must be Enabled, Disabled or NoNewCalls, not "Off"`},
		},
		{
			name: "secured plan served through a proxy pool needs no gateway fqdn",
			give: strings.Replace(strings.Replace(valid, "pool = \"local\"\n", "pool = \"local\"\nvoip_security = \"Secured\"\n", 1),
				"[pools.local]\n", "[pools.local]\naction = \"proxy\"\n", 1),
		},
		{
			name: "UDP-only proxy pool is fine",
			give: "+[pools.trunk]\naction = \"proxy\"\n[[pools.trunk.backends]]\nname = \"t\"\nhost = \"10.0.0.9\"\nudp_port = 5060\ntcp_port = 0\ntls_port = 0\n",
		},
		{
			name: "proxy pool backend without a port, UDP on a redirect pool, unknown action",
			give: "+[pools.trunk]\naction = \"proxy\"\n[[pools.trunk.backends]]\nname = \"t\"\nhost = \"10.0.0.9\"\ntcp_port = 0\ntls_port = 0\n" +
				"[pools.r]\n[[pools.r.backends]]\nname = \"u\"\nhost = \"10.0.0.8\"\nudp_port = 5060\n" +
				"[pools.x]\naction = \"forward\"\n[[pools.x.backends]]\nname = \"v\"\nhost = \"10.0.0.7\"\n",
			want: []string{
				"pools.r.backends[0].udp_port: only a pool with action = \"proxy\" uses UDP (a 302 never sends a gateway to UDP)",
				"pools.trunk.backends[0]: needs at least one of udp_port, tcp_port, tls_port",
				`pools.x.action: must be "redirect" or "proxy", not "forward"`,
			},
		},
		{
			name: "inline array of backend tables",
			give: "+[pools.inline]\nbackends = [{name = \"a\", host = \"10.0.0.2\"}, {name = \"a\", host = \"10.0.0.3\"}]\n",
			want: []string{`pools.inline.backends[1].name: "a" is already the name of backends[0]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			give := tt.give
			if rest, ok := strings.CutPrefix(give, "+"); ok {
				give = valid + rest
			}
			got := problemsOf(t, []byte(give))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestConfigureRefusedKeepsPrevious(t *testing.T) {
	r := configured(t, "route.toml")
	before, err := r.Table(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	bad, err := os.ReadFile(filepath.Join("testdata", "bad.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(t.Context(), bad); err == nil {
		t.Fatal("Configure(bad.toml) = nil, want problems")
	}
	after, err := r.Table(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if before.Generation != after.Generation {
		t.Errorf("Generation changed from %d to %d after a refused Configure", before.Generation, after.Generation)
	}
	call := labCall("1002")
	if d, err := r.Route(t.Context(), &call); err != nil || d.Pool != "remote" {
		t.Errorf("Route() after a refused Configure = %+v, %v; want pool remote", d, err)
	}
}

func TestTable(t *testing.T) {
	r := configured(t, "route.toml")
	topo, err := r.Table(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var gwNames []string
	for _, g := range topo.Gateways {
		gwNames = append(gwNames, g.Name)
	}
	if got, want := strings.Join(gwNames, ","), "drain,lab,off,pbx,secure"; got != want {
		t.Errorf("gateways = %s, want %s (sorted)", got, want)
	}
	secure := topo.Gateways[4]
	wantSecure := "secure [127.0.0.2] gw.example.test Enabled 2.5 10 30s 127.0.0.2:5061 tls"
	if got := fmt.Sprintf("%s %v %s %s %v %d %v %s %s", secure.Name, secure.Addresses, secure.FQDN, secure.Status,
		secure.CallsPerSecond, secure.MaxConcurrentCalls, secure.Ping, secure.PingTarget, secure.PingTransport); got != wantSecure {
		t.Errorf("gateway secure = %s, want %s", got, wantSecure)
	}
	lab := topo.Gateways[1]
	if lab.Status != router.GatewayEnabled || lab.PingTransport != router.UDP || lab.Ping != 0 || len(lab.Addresses) != 2 {
		t.Errorf("gateway lab = %+v, want defaults Enabled, udp, no ping, two addresses", lab)
	}

	wantPools := []router.Pool{
		{Name: "local", Action: router.Redirect, Backends: []router.Backend{
			{Name: "local", Host: "127.0.0.1", TCPPort: 5062, TLSPort: 5063, MaxCallsAllowed: 100},
		}},
		{Name: "remote", Action: router.Redirect, Backends: []router.Backend{
			{Name: "um1", Host: "::1", TCPPort: 5062, TLSPort: 5063, MaxCallsAllowed: 100, Ping: 10 * time.Second},
			{Name: "um2", Host: "um2.example.test", TCPPort: 6062, TLSPort: 6063, MaxCallsAllowed: 0, Ping: 10 * time.Second},
		}},
	}
	if got, want := fmt.Sprintf("%+v", topo.Pools), fmt.Sprintf("%+v", wantPools); got != want {
		t.Errorf("pools =\n %s, want\n %s", got, want)
	}

	// The copy handed out is the caller's to change.
	topo.Gateways[0].Name = "changed"
	topo.Gateways[1].Addresses[0] = unknownIP
	topo.Pools[0].Backends[0].Host = "changed"
	again, err := r.Table(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if again.Gateways[0].Name != "drain" || again.Gateways[1].Addresses[0] == unknownIP || again.Pools[0].Backends[0].Host != "127.0.0.1" {
		t.Error("changing a returned Table changed the plugin's state")
	}

	// Generation follows the settings bytes.
	data, err := os.ReadFile(filepath.Join("testdata", "route.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(t.Context(), append(data, "\n# changed\n"...)); err != nil {
		t.Fatal(err)
	}
	changed, err := r.Table(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if changed.Generation == topo.Generation {
		t.Errorf("Generation %d did not change with the settings", changed.Generation)
	}
}

func TestInfo(t *testing.T) {
	info, err := New().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := base.Info{Kind: base.KindRouter, Name: "um.router", Version: "0.1.0", APIVersion: base.APIVersion}
	if *info != want {
		t.Errorf("Info() = %+v, want %+v", *info, want)
	}
}

// FuzzConfigure checks that Configure never panics and answers any input
// with nil or a *base.ConfigError whose problems all have messages.
func FuzzConfigure(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("[pools.p]\nbackends = [1, \"x\", {}]\n"))
	f.Add([]byte("[gateways.g]\naddresses = [[1]]\ncalls_per_second = nan\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := New()
		err := r.Configure(t.Context(), data)
		if err == nil {
			if _, err := r.Table(t.Context()); err != nil {
				t.Fatalf("Table() after a good Configure: %v", err)
			}
			return
		}
		var ce *base.ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("Configure() error = %v (%T), want a *base.ConfigError", err, err)
		}
		if len(ce.Problems) == 0 {
			t.Fatal("ConfigError without problems")
		}
		for _, p := range ce.Problems {
			if p.Message == "" {
				t.Fatalf("problem at %q without a message", p.Path)
			}
		}
	})
}
