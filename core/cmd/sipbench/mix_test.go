package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/internal/sipptest"
)

func testMix(t *testing.T, mailboxes, calls int) *sipptest.MixFiles {
	t.Helper()
	f, err := sipptest.WriteMix(t.TempDir(), sipptest.Mix{Seed: 1, Mailboxes: mailboxes, Calls: calls})
	if err != nil {
		t.Fatalf("WriteMix() = %v", err)
	}
	return f
}

func TestKamailioMixConfig(t *testing.T) {
	f := testMix(t, 10000, 10)
	c := kamailioConfig{Port: 5090, Children: 2, TCPChildren: 2, UDPBuffer: 1 << 20, ModuleDir: "/mods", Mix: newKamailioMix(f)}
	b, err := c.render()
	if err != nil {
		t.Fatalf("render() = %v", err)
	}
	cfg := string(b)
	for _, want := range []string{
		`loadmodule "db_text.so"`,
		`loadmodule "htable.so"`,
		`modparam("htable", "db_url", "text://` + f.KamailioDB + `")`,
		// 10,000 entries in 2^14 slots.
		`modparam("htable", "htable", "mbx=>size=14;dbtable=mailboxes;")`,
		`if ($fU != $null && $fU != "" && !($fU =~ "^[+]?[0-9]+$") && $(fU{s.tolower}) != "anonymous") {`,
		`$var(n) = $(di{uri.user});`,
		`} else if ($rU == "80000") {`,
		`$var(host) = "127.0.0.1";`,
		`if (!($var(n) =~ "^[0-9]{5}$") || $sht(mbx=>$var(n)) == $null) {`,
		`sl_send_reply("404", "Not Found");`,
		`append_to_reply("Contact: <sip:$rU@$var(host):5062;transport=tcp>\r\n");`,
		`sl_send_reply("302", "Moved Temporarily");`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("mix config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "<sip:$rU@127.0.0.1:5062") || strings.Contains(cfg, `loadmodule "tm.so"`) {
		t.Errorf("mix config has the single call's fixed Contact or is stateful:\n%s", cfg)
	}
	single, err := kamailioConfig{Port: 5090, Children: 2, TCPChildren: 2, ModuleDir: "/mods"}.render()
	if err != nil {
		t.Fatalf("render() = %v", err)
	}
	if strings.Contains(string(single), "htable") {
		t.Errorf("single-call config loads the directory:\n%s", single)
	}
}

// For the mix, the router's settings are the mix directory; every other
// override stays.
func TestEdgedMixConfig(t *testing.T) {
	f := testMix(t, 250, 10)
	shipped := filepath.Join("..", "..", "..", "configs", "umedge.toml")
	e := edgedServer{bin: "edged", plugins: "/opt/plugins", template: shipped, maxCalls: 7}
	b, err := e.config(t.TempDir(), 5090, "127.0.0.1:9999", workload{mix: f})
	if err != nil {
		t.Fatalf("config() = %v", err)
	}
	var got map[string]any
	if _, err := toml.Decode(string(b), &got); err != nil {
		t.Fatalf("decode generated config: %v\n%s", err, b)
	}
	mailboxes, _ := dig(got, "plugins", "umrouter", "settings", "mailboxes").(map[string]any)
	if len(mailboxes) != 250 {
		t.Errorf("%d mailboxes, want the mix's 250", len(mailboxes))
	}
	if _, ok := mailboxes["mb1001"]; ok {
		t.Errorf("the shipped mailboxes are still there")
	}
	gateways, _ := dig(got, "plugins", "umrouter", "settings", "gateways").(map[string]any)
	if _, ok := gateways["mix"]; !ok || len(gateways) != 1 {
		t.Errorf("gateways %v, want only mix", gateways)
	}
	pools, _ := dig(got, "plugins", "umrouter", "settings", "pools").(map[string]any)
	if len(pools) != 2 {
		t.Fatalf("pools %v, want the mix's two", pools)
	}
	for name, p := range pools {
		for _, b := range p.(map[string]any)["backends"].([]map[string]any) {
			if b["max_calls_allowed"] != int64(7) {
				t.Errorf("pool %s: max_calls_allowed = %v, want 7", name, b["max_calls_allowed"])
			}
		}
	}
	for path, want := range map[string]any{"sip.tcp_port": int64(5090), "admin.listen": "127.0.0.1:9999", "plugins.umrouter.kind": "router"} {
		if v := dig(got, strings.Split(path, ".")...); v != want {
			t.Errorf("%s = %#v, want %#v", path, v, want)
		}
	}
}

func TestValidateScenarios(t *testing.T) {
	base := options{start: 1000, max: 2000, maxSteps: 1, duration: time.Second, loss: 0.001,
		servers: []string{"kamailio"}, transports: []string{"udp"}, kamChildren: []int{2}, mailboxes: 10000}
	tests := []struct {
		name      string
		scenarios []string
		mailboxes int
		wantErr   bool
	}{
		{name: "both", scenarios: []string{"single", "mix"}, mailboxes: 10000},
		{name: "single ignores the directory size", scenarios: []string{"single"}, mailboxes: 0},
		{name: "unknown scenario", scenarios: []string{"mixed"}, mailboxes: 10000, wantErr: true},
		{name: "none", mailboxes: 10000, wantErr: true},
		{name: "no mailboxes", scenarios: []string{"mix"}, mailboxes: 0, wantErr: true},
		{name: "too many mailboxes", scenarios: []string{"mix"}, mailboxes: sipptest.MixMaxMailboxes + 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.scenarios, o.mailboxes = tt.scenarios, tt.mailboxes
			if err := o.validate(); (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, errBadFlag)) {
				t.Errorf("validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestStepStringCodes(t *testing.T) {
	tests := []struct {
		name  string
		codes map[int]int
		want  string
	}{
		{name: "sorted", codes: map[int]int{404: 10, 302: 90}, want: "answers 302×90 404×10,"},
		{name: "none", want: "answers none,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := step{Rate: 10, Planned: 100, Successful: 100, Codes: tt.codes, Elapsed: 10 * time.Second}
			if got := s.String(); !strings.Contains(got, tt.want) {
				t.Errorf("String() = %q, want %q in it", got, tt.want)
			}
		})
	}
}

func TestSippBindFailed(t *testing.T) {
	tests := []struct {
		name string
		give *sipptest.Result
		want bool
	}{
		{name: "bind error before the first call", give: &sipptest.Result{ExitCode: 254}, want: true},
		{name: "no result", give: nil},
		{name: "calls failed", give: &sipptest.Result{ExitCode: 1, Created: 10, Failed: 10}},
		{name: "bind error after calls", give: &sipptest.Result{ExitCode: 254, Created: 3}},
		{name: "other fatal error", give: &sipptest.Result{ExitCode: 255}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sippBindFailed(tt.give); got != tt.want {
				t.Errorf("sippBindFailed(%+v) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}
