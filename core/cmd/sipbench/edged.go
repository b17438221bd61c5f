package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
)

// edgedServer starts bin/edged with a config derived from the shipped
// all-in-one example, so the benchmark runs the same structure a user
// runs: gateway 127.0.0.1, the catch-all hunt group, the TelExtn dial plan
// with 4-digit extensions, mailbox 1001, and the local back-end pool at
// 127.0.0.1:5062/5063. For the mix the router's settings are the mix
// directory instead (sipptest.WriteMix).
type edgedServer struct {
	label    string // "edged", or serverEdgedBase for the -edged-base binary
	bin      string
	plugins  string // plugin directory, pinned by <plugins>.sha256 beside it
	template string // the shipped config to start from
	maxCalls int    // max_calls_allowed of the back end; 0 = unlimited
	noCDR    bool   // scenario b2bua: no [sbc] cdr_file
}

// The media port range of scenario b2bua: 9,000 RTP/RTCP pairs, two per
// call, so 4,500 calls at once, below SIPp's own ports (sipptest picks
// 20000..32000) and the kernel's ephemeral range. A port of the range that
// something else holds (a SIP test's listener) is skipped by the engine
// (EADDRINUSE). The range is what a box at these rates needs: calls held
// 0.5 s at 5,000 calls/s, with the queueing of a server near its knee, are
// 3,000–4,000 at once, and with 6000–19999 (3,500 calls) edged answered 1 %
// of the calls of its 5,000/s step 503 at 89 % of its CPU (2026-12-02): a
// limit of the config, not of the server.
const (
	b2buaMediaPortMin = 2000
	b2buaMediaPortMax = 19999
)

// b2buaMaxCalls is [sbc] max_calls of scenario b2bua: as many calls as the
// media ports hold, as an operator sizes it. The shipped 2,000 made edged
// answer 503 from about 3,000 calls/s held 0.5 s, a limit of the config,
// not of the server (the reference has none).
const b2buaMaxCalls = (b2buaMediaPortMax - b2buaMediaPortMin + 1) / 4

// b2buaIdlePairs is [media] idle_pairs of scenario b2bua: every pair of
// the range may rest idle (core/internal/media, pairpool.go), so that a
// new leg takes an idle pair instead of opening sockets. The derived
// bound, a quarter of RLIMIT_NOFILE, is 2,500 pairs under this host's
// 20,000 (which even root cannot raise in its container), a sixth of the
// legs at 4,000 calls/s. An idle pair's ports are the range's, whether
// idle or in use, so the media engine never holds more than the range's
// 18,000 descriptors either way; the bench's SIP needs a few dozen more.
// At 4,300 calls/s held 0.5 s ~4,300 pairs are in use and the other
// ~4,700 rest idle: every leg takes one, inside its 2 s quarantine (the
// engine does so when no fresh pair is left). Past its quarantine would
// take rate × 2 legs × 2 s ≈ 17,000 idle pairs, 34,000 more ports than
// there are below SIPp's 20000–32000 and outside the kernel's ephemeral
// 32768–60999: the range stays.
const b2buaIdlePairs = (b2buaMediaPortMax - b2buaMediaPortMin + 1) / 2

// serverEdgedBase is the server name of the -edged-base binary: edged as
// it was, measured beside the new one in the same run (a shared machine's
// load moves between runs, not within one).
const serverEdgedBase = "edged-base"

func (e edgedServer) name() string {
	if e.label == "" {
		return "edged"
	}
	return e.label
}

// command writes edged.toml for w (see config); edged is ready when
// /healthz answers 200 and SIP answers an OPTIONS over UDP and accepts TCP
// connections.
func (e edgedServer) command(dir string, port int, w workload) ([]string, func() error, error) {
	admin, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", admin)
	b, err := e.config(dir, port, adminAddr, w)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, nil, fmt.Errorf("write edged config: %w", err)
	}
	client := &http.Client{Timeout: time.Second}
	ready := func() error {
		resp, err := client.Get("http://" + adminAddr + "/healthz")
		if err != nil {
			return fmt.Errorf("healthz: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return sipReady(port)
	}
	return []string{e.bin, "-config", path}, ready, nil
}

// config returns the template with the benchmark's overrides: loopback
// IPv4 only, UDP and TCP on port, no TLS, admin on adminAddr, warnings-only
// logging, the plugin directory, the mix directory as the router's
// settings when w has a mix, and the back ends' call limit. With w's back
// ends (scenario b2bua) every pool is a proxy pool whose back ends listen
// on w.backend's port and transport only, the media ports cover the
// concurrent calls, and CDRs go to dir/cdr.jsonl unless noCDR.
func (e edgedServer) config(dir string, port int, adminAddr string, w workload) ([]byte, error) {
	mix := w.mix
	var cfg map[string]any
	if _, err := toml.DecodeFile(e.template, &cfg); err != nil {
		return nil, fmt.Errorf("read edged config template: %w", err)
	}
	plugins, err := filepath.Abs(e.plugins)
	if err != nil {
		return nil, fmt.Errorf("plugin dir: %w", err)
	}
	set := func(path []string, v any) {
		m := cfg
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[path[len(path)-1]] = v
	}
	set([]string{"log", "level"}, "warn")
	set([]string{"admin", "listen"}, adminAddr)
	set([]string{"sip", "listen"}, []string{"127.0.0.1"})
	set([]string{"sip", "mode"}, "tcp")
	if sip, ok := cfg["sip"].(map[string]any); ok {
		delete(sip, "tls") // the demo's TLS files are named relative to the repo and unused here
	}
	set([]string{"sip", "udp"}, true)
	set([]string{"sip", "tcp_port"}, port)
	set([]string{"plugin_host", "dir"}, plugins)
	set([]string{"plugin_host", "sha256sums"}, filepath.Clean(plugins)+".sha256")
	if mix != nil {
		var doc map[string]any
		if _, err := toml.DecodeFile(mix.Settings, &doc); err != nil {
			return nil, fmt.Errorf("read mix settings: %w", err)
		}
		settings, ok := dig(doc, "plugins", "umrouter", "settings").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s has no [plugins.umrouter.settings]", errBadMix, mix.Settings)
		}
		set([]string{"plugins", "umrouter", "settings"}, settings)
	}

	// Every back end of every pool gets the benchmark's call limit.
	pools, _ := dig(cfg, "plugins", "umrouter", "settings", "pools").(map[string]any)
	for _, p := range pools {
		pm, _ := p.(map[string]any)
		backends, _ := pm["backends"].([]map[string]any)
		for _, b := range backends {
			b["max_calls_allowed"] = e.maxCalls
		}
		if w.backend != nil {
			pm["action"] = "proxy"
			pm["options_interval"] = "0s"
			for _, b := range backends {
				ports := map[string]int{"udp": 0, "tcp": 0, "tls": 0}
				ports[w.backend.transport] = w.backend.port
				for tp, p := range ports {
					b[tp+"_port"] = p
				}
			}
		}
	}
	if w.backend != nil {
		if mix == nil {
			return nil, fmt.Errorf("%w: the proxy needs the mix's directory", errBadMix)
		}
		set([]string{"media", "port_min"}, b2buaMediaPortMin)
		set([]string{"media", "port_max"}, b2buaMediaPortMax)
		set([]string{"sbc", "max_calls"}, b2buaMaxCalls)
		set([]string{"media", "idle_pairs"}, b2buaIdlePairs)
		if !e.noCDR {
			set([]string{"sbc", "cdr_file"}, filepath.Join(dir, "cdr.jsonl"))
		}
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode edged config: %w", err)
	}
	return buf.Bytes(), nil
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}
