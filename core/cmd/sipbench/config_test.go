package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestKamailioConfig(t *testing.T) {
	b, err := kamailioConfig{Port: 5090, Children: 4, TCPChildren: 3, UDPBuffer: 1 << 20, ModuleDir: "/mods"}.render()
	if err != nil {
		t.Fatalf("render() = %v", err)
	}
	cfg := string(b)
	for _, want := range []string{
		"listen=udp:127.0.0.1:5090\n",
		"listen=tcp:127.0.0.1:5090\n",
		"children=4\n",
		"tcp_children=3\n",
		"maxbuffer=1048576\n",
		`mpath="/mods"`,
		`loadmodule "sl.so"`,
		`append_to_reply("Contact: <sip:$rU@127.0.0.1:5062;transport=tcp>\r\n");`,
		`sl_send_reply("302", "Moved Temporarily");`,
		`sl_send_reply("200", "OK");`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "0.0.0.0") || strings.Contains(cfg, "loadmodule \"tm.so\"") {
		t.Errorf("config listens beyond loopback or is stateful:\n%s", cfg)
	}
}

// The edged config is the shipped all-in-one example with the benchmark's
// overrides; everything else stays as shipped.
func TestEdgedConfig(t *testing.T) {
	shipped := filepath.Join("..", "..", "..", "configs", "umedge.toml")
	if _, err := os.Stat(shipped); err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	e := edgedServer{bin: "edged", plugins: "/opt/plugins", template: shipped, maxCalls: 0}
	b, err := e.config(t.TempDir(), 5090, "127.0.0.1:9999", workload{})
	if err != nil {
		t.Fatalf("config() = %v", err)
	}
	var got map[string]any
	if _, err := toml.Decode(string(b), &got); err != nil {
		t.Fatalf("decode generated config: %v\n%s", err, b)
	}
	var want map[string]any
	if _, err := toml.DecodeFile(shipped, &want); err != nil {
		t.Fatalf("decode shipped config: %v", err)
	}
	tests := []struct {
		path []string
		want any
	}{
		{path: []string{"admin", "listen"}, want: "127.0.0.1:9999"},
		{path: []string{"sip", "tcp_port"}, want: int64(5090)},
		{path: []string{"sip", "udp"}, want: true},
		{path: []string{"sip", "mode"}, want: "tcp"},
		{path: []string{"log", "level"}, want: "warn"},
		{path: []string{"plugin_host", "dir"}, want: "/opt/plugins"},
		{path: []string{"plugin_host", "sha256sums"}, want: "/opt/plugins.sha256"},
		{path: []string{"sip", "fqdn"}, want: dig(want, "sip", "fqdn")},
		{path: []string{"plugins", "umrouter", "binary"}, want: dig(want, "plugins", "umrouter", "binary")},
	}
	for _, tt := range tests {
		if v := dig(got, tt.path...); v != tt.want {
			t.Errorf("%s = %#v, want %#v", strings.Join(tt.path, "."), v, tt.want)
		}
	}
	if l, _ := dig(got, "sip", "listen").([]any); len(l) != 1 || l[0] != "127.0.0.1" {
		t.Errorf("sip.listen = %v, want [127.0.0.1]", dig(got, "sip", "listen"))
	}
	pools, _ := dig(got, "plugins", "umrouter", "settings", "pools").(map[string]any)
	if len(pools) == 0 {
		t.Fatalf("no pools in the generated config")
	}
	for name, p := range pools {
		backends, _ := p.(map[string]any)["backends"].([]map[string]any)
		if len(backends) == 0 {
			t.Errorf("pool %s has no backends", name)
		}
		for _, b := range backends {
			if b["max_calls_allowed"] != int64(0) {
				t.Errorf("pool %s: max_calls_allowed = %v, want 0", name, b["max_calls_allowed"])
			}
		}
	}
}

func TestRenderTable(t *testing.T) {
	pass := func(scenario, server string, rate int, mainKiB int64) result {
		return result{scenario: scenario, transport: "udp", server: server, best: 0, steps: []step{{
			Rate: rate, Planned: rate * 10, Successful: rate * 10, Elapsed: 10 * time.Second, Pass: true,
			ServerCPU: time.Duration(rate*10) * 50 * time.Microsecond,
			Mem:       memory{Procs: 1, MainKiB: mainKiB, MaxKiB: mainKiB, SumKiB: mainKiB},
		}}}
	}
	goKam := pass("mix", "kamailio children=4", 1400, 8*1024)
	goKam.steps[0].Generator, goKam.steps[0].LoadCPU = "go", 4*time.Second
	goKam.steps[0].LatP50, goKam.steps[0].LatP99 = 250*time.Microsecond, 1500*time.Microsecond
	lossy := pass("mix", "edged", 700, 40*1024)
	lossy.steps[0].Successful = 6993
	got := renderTable([]result{
		pass("single", "kamailio", 1000, 7*1024),
		pass("single", "edged", 1500, 30*1024),
		{scenario: "single", transport: "tcp", server: "edged", best: -1, steps: []step{{Rate: 1000, Why: "edged exited"}}},
		goKam,
		lossy,
	})
	for _, want := range []string{
		"| single | UDP | kamailio | 1000 | 0.000 | 50 | 7.0 / 7.0 / 7.0, 1 | sipp 0 % (0) | – | – |",
		"| single | UDP | edged | 1500 | 0.000 | 50 | 30.0 / 30.0 / 30.0, 1 | sipp 0 % (0) | – | 1.50× kamailio |",
		"| single | TCP | edged | – | – | – | – | – | – | no step passed: edged exited |",
		// The ratio compares with Kamailio in the same scenario.
		"| mix | UDP | kamailio children=4 | 1400 | 0.000 | 50 | 8.0 / 8.0 / 8.0, 1 | go 40 % (286) | 0.25 / 1.50 | – |",
		"| mix | UDP | edged | 699 | 0.100 | 50 | 40.0 / 40.0 / 40.0, 1 | sipp 0 % (0) | – | 0.50× kamailio |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestAppendReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "PERF.md")
	for range 2 {
		if err := appendReport(path, []string{"date: x"}, "| a |\n"); err != nil {
			t.Fatalf("appendReport() = %v", err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "## sipbench run"); n != 2 {
		t.Errorf("%d sections after two appends, want 2:\n%s", n, b)
	}
}

func TestParseInts(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    []int
		wantErr bool
	}{
		{name: "list", give: "2, 4", want: []int{2, 4}},
		{name: "zero", give: "0", wantErr: true},
		{name: "word", give: "two", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInts(tt.give)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("parseInts(%q) = %v, %v; want %v, error %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
