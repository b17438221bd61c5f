package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// edgedServer starts bin/edged with a config derived from the shipped
// all-in-one example, so the benchmark runs the same structure a user
// runs: gateway 127.0.0.1, the catch-all hunt group, the TelExtn dial plan
// with 4-digit extensions, mailbox 1001, and the local back-end pool at
// 127.0.0.1:5062/5063. For the mix the router's settings are the mix
// directory instead (sipptest.WriteMix).
type edgedServer struct {
	bin      string
	plugins  string // plugin directory, pinned by <plugins>.sha256 beside it
	template string // the shipped config to start from
	maxCalls int    // max_calls_allowed of the back end; 0 = unlimited
}

func (e edgedServer) name() string { return "edged" }

// command writes edged.toml, with the mix directory as the router's
// settings when mix is not nil; edged is ready when /healthz answers 200 and
// SIP answers an OPTIONS over UDP and accepts TCP connections.
func (e edgedServer) command(dir string, port int, mix *sipptest.MixFiles) ([]string, func() error, error) {
	admin, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", admin)
	b, err := e.config(port, adminAddr, mix)
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
// settings when mix is not nil, and the back ends' call limit.
func (e edgedServer) config(port int, adminAddr string, mix *sipptest.MixFiles) ([]byte, error) {
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
