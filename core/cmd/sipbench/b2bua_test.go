package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/internal/sipload"
)

func TestKamailioProxyConfig(t *testing.T) {
	f := testMix(t, 1000, 10)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			c := kamailioConfig{Port: 5090, Children: 2, TCPChildren: 2, ModuleDir: "/mods", Mix: newKamailioMix(f),
				Proxy: &kamailioProxy{Port: 5070, Transport: tp}}
			b, err := c.render()
			if err != nil {
				t.Fatalf("render() = %v", err)
			}
			cfg := string(b)
			for _, want := range []string{
				`loadmodule "tm.so"`,
				`loadmodule "rr.so"`,
				`loadmodule "htable.so"`,
				`if (!mf_process_maxfwd_header("10")) {`,
				`if (has_totag()) {`,
				`if (loose_route()) {`,
				`if (t_check_trans()) {`,
				// The same directory lookup as the 302 mix.
				`if (!($var(n) =~ "^[0-9]{5}$") || $sht(mbx=>$var(n)) == $null) {`,
				`sl_send_reply("404", "Not Found");`,
				"record_route();\n",
				`$du = "sip:" + $var(host) + ":5070;transport=` + tp + `";`,
				`if (!t_relay()) {`,
			} {
				if !strings.Contains(cfg, want) {
					t.Errorf("proxy config lacks %q:\n%s", want, cfg)
				}
			}
			if strings.Contains(cfg, "append_to_reply") || strings.Contains(cfg, `sl_send_reply("302"`) {
				t.Errorf("proxy config still redirects:\n%s", cfg)
			}
		})
	}
	// The redirect configs stay stateless.
	redirect, err := kamailioConfig{Port: 5090, Children: 2, TCPChildren: 2, ModuleDir: "/mods", Mix: newKamailioMix(f)}.render()
	if err != nil {
		t.Fatalf("render() = %v", err)
	}
	if strings.Contains(string(redirect), "tm.so") || strings.Contains(string(redirect), "t_relay") {
		t.Errorf("redirect config is stateful:\n%s", redirect)
	}
}

func TestKamailioProxyNeedsMix(t *testing.T) {
	k := kamailioServer{bin: "kamailio", cfg: kamailioConfig{Children: 2, TCPChildren: 2, ModuleDir: "/mods"}}
	_, _, err := k.command(t.TempDir(), 5090, workload{backend: &backend{port: 5070, transport: "udp"}})
	if !errors.Is(err, errBadMix) {
		t.Errorf("command() = %v, want %v", err, errBadMix)
	}
}

func TestKamailioShm(t *testing.T) {
	for _, tt := range []struct {
		name    string
		giveMB  int
		wantArg bool
	}{
		{name: "default", giveMB: 0},
		{name: "set", giveMB: 512, wantArg: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := kamailioServer{bin: "kamailio", shmMB: tt.giveMB, cfg: kamailioConfig{Children: 2, TCPChildren: 2, ModuleDir: "/mods"}}
			args, _, err := k.command(t.TempDir(), 5090, workload{})
			if err != nil {
				t.Fatalf("command() = %v", err)
			}
			if got := strings.Contains(strings.Join(args, " "), " -m 512"); got != tt.wantArg {
				t.Errorf("args %v: -m 512 present = %v, want %v", args, got, tt.wantArg)
			}
		})
	}
}

// In scenario b2bua every pool is a proxy pool towards the callees' port
// on one transport, the media ports are the benchmark's, and CDRs are on
// unless switched off.
func TestEdgedB2BUAConfig(t *testing.T) {
	f := testMix(t, 250, 10)
	shipped := filepath.Join("..", "..", "..", "configs", "umedge.toml")
	for _, tt := range []struct {
		name      string
		transport string
		noCDR     bool
	}{
		{name: "udp with CDRs", transport: "udp"},
		{name: "tcp without CDRs", transport: "tcp", noCDR: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e := edgedServer{bin: "edged", plugins: "/opt/plugins", template: shipped, noCDR: tt.noCDR}
			b, err := e.config(dir, 5090, "127.0.0.1:9999", workload{mix: f, backend: &backend{port: 5070, transport: tt.transport}})
			if err != nil {
				t.Fatalf("config() = %v", err)
			}
			var got map[string]any
			if _, err := toml.Decode(string(b), &got); err != nil {
				t.Fatalf("decode generated config: %v\n%s", err, b)
			}
			pools, _ := dig(got, "plugins", "umrouter", "settings", "pools").(map[string]any)
			if len(pools) != 2 {
				t.Fatalf("pools %v, want the mix's two", pools)
			}
			for name, p := range pools {
				pm := p.(map[string]any)
				if pm["action"] != "proxy" || pm["options_interval"] != "0s" {
					t.Errorf("pool %s: action %v, options_interval %v, want proxy without OPTIONS", name, pm["action"], pm["options_interval"])
				}
				for _, b := range pm["backends"].([]map[string]any) {
					for _, tp := range []string{"udp", "tcp", "tls"} {
						want := int64(0)
						if tp == tt.transport {
							want = 5070
						}
						if b[tp+"_port"] != want {
							t.Errorf("pool %s: %s_port = %v, want %d", name, tp, b[tp+"_port"], want)
						}
					}
				}
			}
			wantCDR := any(filepath.Join(dir, "cdr.jsonl"))
			if tt.noCDR {
				wantCDR = nil
			}
			for path, want := range map[string]any{
				"media.port_min": int64(b2buaMediaPortMin), "media.port_max": int64(b2buaMediaPortMax), "sbc.cdr_file": wantCDR,
				"sbc.max_calls": int64(b2buaMaxCalls), "media.idle_pairs": int64(b2buaIdlePairs),
			} {
				if v := dig(got, strings.Split(path, ".")...); v != want {
					t.Errorf("%s = %#v, want %#v", path, v, want)
				}
			}
		})
	}
}

// Each back-end host takes the mix's calls to its mailboxes: the 302 lines
// by their Contact's host.
func TestWantPerHost(t *testing.T) {
	f := testMix(t, 1000, 1000)
	want, err := wantPerHost(f, backendHosts())
	if err != nil {
		t.Fatalf("wantPerHost() = %v", err)
	}
	redirected := 0
	for _, c := range f.Calls {
		if c.Code == 302 {
			redirected++
		}
	}
	// 90 % reach a back end; the pilot's calls without Diversion all go to
	// the dial plan's pool (127.0.0.1), the others about half each.
	if want[0]+want[1] != redirected || redirected != 900 || want[0] <= want[1] || want[1] < 300 {
		t.Errorf("wantPerHost() = %v for %d redirected calls, want 900 split with more on 127.0.0.1", want, redirected)
	}
	if _, err := wantPerHost(f, []string{"127.0.0.1"}); !errors.Is(err, errBadMix) {
		t.Errorf("wantPerHost() with one host = %v, want %v", err, errBadMix)
	}
}

func TestValidateB2BUA(t *testing.T) {
	good := options{
		start: 100, max: 1000, maxSteps: 3, duration: 2 * time.Second, loss: 0.001,
		servers: []string{"edged"}, transports: []string{"udp"}, scenarios: []string{scenarioB2BUA}, kamChildren: []int{2},
		mailboxes: 10000, hold: time.Second, backendTransports: []string{"udp"}, activeCalls: 2000, activeHold: 20 * time.Second,
	}
	for _, tt := range []struct {
		name    string
		give    func(o *options)
		wantErr string
	}{
		{name: "good", give: func(*options) {}},
		{name: "both back-end transports", give: func(o *options) { o.backendTransports = []string{"udp", "tcp"} }},
		{name: "no memory measurement", give: func(o *options) { o.activeCalls, o.activeHold = 0, 0 }},
		{name: "tls back end", give: func(o *options) { o.backendTransports = []string{"udp", "tls"} }, wantErr: "-backend-transports"},
		{name: "no back-end transport", give: func(o *options) { o.backendTransports = nil }, wantErr: "-backend-transports"},
		{name: "negative hold", give: func(o *options) { o.hold = -time.Second }, wantErr: "-hold"},
		{name: "hold beyond a minute", give: func(o *options) { o.hold = 2 * time.Minute }, wantErr: "-hold"},
		{name: "active hold past the media timeout", give: func(o *options) { o.activeHold = time.Minute }, wantErr: "-active-hold"},
		{name: "negative active calls", give: func(o *options) { o.activeCalls = -1 }, wantErr: "-active-calls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.give(&o)
			err := o.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case tt.wantErr != "" && (!errors.Is(err, errBadFlag) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("validate() = %v, want %v naming %s", err, errBadFlag, tt.wantErr)
			}
		})
	}
}

// The last calls' hold time is no time in which calls are placed.
func TestAchievedLeavesOutHold(t *testing.T) {
	s := step{Rate: 100, Planned: 1000, Successful: 1000, Elapsed: 11 * time.Second, Hold: time.Second}
	if got := s.Achieved(); got != 100 {
		t.Errorf("Achieved() = %v, want 100", got)
	}
	s.judge(0.001)
	if !s.Pass {
		t.Errorf("judge: %s, want a pass", s.Why)
	}
}

func TestActiveCalls(t *testing.T) {
	a := activeCalls{Rate: 100, Hold: 20 * time.Second, Up: 1800, IdleKiB: 50 * 1024, ActiveKiB: 50*1024 + 1800*20}
	if got := a.PerCallKiB(); got != 20 {
		t.Errorf("PerCallKiB() = %v, want 20", got)
	}
	if got := (activeCalls{}).PerCallKiB(); !math.IsNaN(got) {
		t.Errorf("PerCallKiB() without calls = %v, want NaN", got)
	}
	table := renderActive([]result{
		{scenario: "b2bua", transport: "udp→udp", server: "kamailio"},
		{scenario: "b2bua", transport: "udp→udp", server: "edged", active: &a},
	})
	want := "| b2bua | UDP→UDP | edged | 1800 | 50.0 | 85.2 | 20.0 | – | – | – | – | – | – | 100.000 |"
	if !strings.Contains(table, want) || strings.Contains(table, "kamailio") {
		t.Errorf("renderActive() =\n%s\nwant the edged row %q only", table, want)
	}
	// With the server's own figure: edged's live heap grew 18 MiB over
	// 1,800 calls (10.24 KiB each), and its 4 media sockets a call.
	a.Self = &selfFigure{Kind: "Go live heap", Idle: 14 << 20, Active: 32 << 20, IdleN: 3, ActiveN: 5, PkgIdle: -1, PkgActive: -1}
	a.KernelSockets = 4
	table = renderActive([]result{{scenario: "b2bua", transport: "udp→udp", server: "edged", active: &a}})
	want = "| b2bua | UDP→UDP | edged | 1800 | 50.0 | 85.2 | 20.0 | Go live heap | 14.00 | 32.00 | 10.24 | – | 11.20 | 100.000 |"
	if !strings.Contains(table, want) {
		t.Errorf("renderActive() =\n%s\nwant the row %q", table, want)
	}
	if s := a.String(); !strings.Contains(s, "10.24 KiB per active call") || !strings.Contains(s, "4 media sockets per call, ~11.2 KiB") {
		t.Errorf("String() = %q, want the live heap per call and the kernel's sockets apart", s)
	}
	// Kamailio's: shm and pkg.
	k := activeCalls{Up: 1000, Self: &selfFigure{Kind: "shm", Idle: 10 << 20, Active: 10<<20 + 1000*2048, PkgIdle: 8 << 20, PkgActive: 8<<20 + 1000*512}}
	if got, got2 := k.SelfPerCallKiB(), k.PkgPerCallKiB(); got != 2 || got2 != 0.5 {
		t.Errorf("Kamailio per call shm %v pkg %v KiB, want 2 and 0.5", got, got2)
	}
	// A tm + rr proxy keeps nothing per dialog: 0.00, not "not measured".
	k.Self.Active, k.Self.PkgActive = k.Self.Idle, k.Self.PkgIdle
	table = renderActive([]result{{scenario: "b2bua", transport: "udp→udp", server: "kamailio", active: &k}})
	if want := "| shm | 10.00 | 10.00 | 0.00 | 0.00 | – |"; !strings.Contains(table, want) {
		t.Errorf("renderActive() =\n%s\nwant %q", table, want)
	}
	if got := renderActive([]result{{scenario: "mix"}}); got != "" {
		t.Errorf("renderActive() without measurements = %q, want empty", got)
	}
}

// The Go callees count the calls each host took: calls at a host beyond
// its share of the mix are misrouted and taken off the successful ones,
// and the callees' CPU is the generator's.
func TestGoCalleesMisrouted(t *testing.T) {
	for _, tc := range []struct {
		name          string
		want          []int
		wantMisrouted int
	}{
		{"right host", []int{3, 0}, 0},
		{"wrong host", []int{0, 3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs, g := testGoCallees(t)
			c := &callees{gop: g, hosts: backendHosts(), want: tc.want}
			defer c.kill()
			lines := []sipload.Line{{Caller: "4000", Called: "1001", Code: 302}}
			res, err := sipload.Run(context.Background(), sipload.Config{Target: addrs[0], Lines: lines, Calls: 3, Rate: 100, FullCalls: true, Hold: 300 * time.Millisecond})
			if err != nil || res.Successful != 3 {
				t.Fatalf("Run() = %v, %v", res, err)
			}
			s := step{Successful: res.Successful}
			if err := c.stop(&s, time.Second); err != nil {
				t.Fatalf("stop() = %v", err)
			}
			if s.Misrouted != tc.wantMisrouted || s.Successful != 3-tc.wantMisrouted || s.Answered != 3 || s.CalleeCPU <= 0 || s.LoadCPU != s.CalleeCPU {
				t.Errorf("step %+v, want %d misrouted of 3 answered, the callees' CPU counted", s, tc.wantMisrouted)
			}
		})
	}
}

// While calls are up the Go callees report them (the memory run reads
// them), and a callee that cannot bind fails at start with the reason.
func TestGoCalleesCurrent(t *testing.T) {
	b, err := newBackend("udp")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(b.port))
	g, err := startGoCallees([]string{addr}, "")
	if err != nil {
		t.Fatal(err)
	}
	c := &callees{gop: g, hosts: []string{"127.0.0.1"}, want: []int{5}}
	defer c.kill()
	if _, err := startGoCallees([]string{addr}, ""); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a second callee on %s: %v, want the bind error", addr, err)
	}
	done := make(chan *sipload.Result, 1)
	go func() {
		res, _ := sipload.Run(context.Background(), sipload.Config{Target: addr, Lines: []sipload.Line{{Caller: "4000", Called: "1001", Code: 302}},
			Calls: 5, Rate: 50, FullCalls: true, Hold: 1500 * time.Millisecond})
		done <- res
	}()
	time.Sleep(time.Second)
	if n, err := c.current(); err != nil || n != 5 {
		t.Errorf("current() = %d, %v; want 5 calls up", n, err)
	}
	if res := <-done; res == nil || res.Successful != 5 {
		t.Fatalf("Run() = %v", res)
	}
	s := step{Successful: 5}
	if err := c.stop(&s, time.Second); err != nil || s.Answered != 5 || s.Misrouted != 0 {
		t.Errorf("stop() = %v, step %+v", err, s)
	}
}

// A server that answers the caller itself — 200 to the INVITE and to the
// BYE, the callees never seeing the call or its BYE — must not pass: only
// the calls a callee ended count as successful, besides the mix's lines
// that reach no callee.
func TestGoCalleesUnreached(t *testing.T) {
	_, g := testGoCallees(t)
	c := &callees{gop: g, hosts: backendHosts(), want: []int{3, 0}, others: 1}
	defer c.kill()
	sb, err := newBackend("udp")
	if err != nil {
		t.Fatal(err)
	}
	server, err := sipload.ListenUAS(sipload.UASConfig{Addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(sb.port))}) // answers locally, calls nobody
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	lines := []sipload.Line{{Caller: "4000", Called: "1001", Code: 302}}
	res, err := sipload.Run(context.Background(), sipload.Config{Target: server.Addr(), Lines: lines, Calls: 3, Rate: 100, FullCalls: true, Hold: 100 * time.Millisecond})
	if err != nil || res.Successful != 3 {
		t.Fatalf("Run() = %v, %v", res, err)
	}
	s := step{Successful: res.Successful + 1} // and one line the server answers itself (a 404), right
	if err := c.stop(&s, 300*time.Millisecond); err != nil {
		t.Fatalf("stop() = %v", err)
	}
	if s.Successful != 1 || s.Answered != 0 {
		t.Errorf("step %+v: want 1 successful (the line no callee takes), none of the 3 the callees never saw", s)
	}
}

// testGoCallees starts the Go callees on a free back-end port of both
// back-end hosts, as a step does, and returns their addresses.
func testGoCallees(t *testing.T) ([]string, *goCallees) {
	t.Helper()
	b, err := newBackend("udp")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, h := range backendHosts() {
		addrs = append(addrs, net.JoinHostPort(h, fmt.Sprint(b.port)))
	}
	g, err := startGoCallees(addrs, "")
	if err != nil {
		t.Fatal(err)
	}
	return addrs, g
}
