package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsage: `edged -h` and `edged help` list every subcommand and the
// flags, on stdout with exit 0; bad usage prints it on stderr, exit 2.
func TestUsage(t *testing.T) {
	wantInUsage := []string{
		"edged [run] [-config FILE]",
		"edged config check FILE",
		"edged demo-pki DIR",
		"edged firewall print [-config FILE]",
		"edged version",
		"edged help",
		"-config FILE",
		`(default "/etc/umedge/umedge.toml")`,
	}
	tests := []struct {
		name       string
		give       []string
		wantCode   int
		wantStdout bool   // usage on stdout (else on stderr)
		wantFirst  string // first line of the stream, when not the usage's
	}{
		{name: "-h", give: []string{"-h"}, wantCode: 0, wantStdout: true},
		{name: "-help", give: []string{"-help"}, wantCode: 0, wantStdout: true},
		{name: "--help", give: []string{"--help"}, wantCode: 0, wantStdout: true},
		{name: "help", give: []string{"help"}, wantCode: 0, wantStdout: true},
		{name: "-h after a flag", give: []string{"-config", "x.toml", "-h"}, wantCode: 0, wantStdout: true},
		{name: "run -h", give: []string{"run", "-h"}, wantCode: 0, wantStdout: true},
		{name: "unknown subcommand", give: []string{"frobnicate"}, wantCode: 2,
			wantFirst: `edged: unknown command "frobnicate"`},
		{name: "typo of a subcommand", give: []string{"verison"}, wantCode: 2,
			wantFirst: `edged: unknown command "verison"`},
		{name: "unknown flag", give: []string{"-confg", "x.toml"}, wantCode: 2,
			wantFirst: "flag provided but not defined: -confg"},
		{name: "stray argument after the flags", give: []string{"-config", "x.toml", "extra"}, wantCode: 2,
			wantFirst: `edged: unexpected argument "extra"`},
		{name: "config without check", give: []string{"config"}, wantCode: 2,
			wantFirst: "usage: edged config check FILE"},
		{name: "config check without a file", give: []string{"config", "check"}, wantCode: 2,
			wantFirst: "usage: edged config check FILE"},
		{name: "demo-pki without a directory", give: []string{"demo-pki"}, wantCode: 2,
			wantFirst: "usage: edged demo-pki DIR"},
		{name: "firewall without print", give: []string{"firewall"}, wantCode: 2,
			wantFirst: "usage: edged firewall print [-config FILE]"},
		{name: "version with an argument", give: []string{"version", "now"}, wantCode: 2,
			wantFirst: "edged version takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer

			code := run(tt.give, &stdout, &stderr)

			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d", tt.give, code, tt.wantCode)
			}
			out, other := stderr.String(), stdout.String()
			if tt.wantStdout {
				out, other = other, out
			}
			if other != "" {
				t.Errorf("run(%q) wrote to the other stream: %q", tt.give, other)
			}
			for _, w := range wantInUsage {
				if !strings.Contains(out, w) {
					t.Errorf("run(%q) output lacks %q:\n%s", tt.give, w, out)
				}
			}
			first, _, _ := strings.Cut(out, "\n")
			if tt.wantFirst != "" && first != tt.wantFirst {
				t.Errorf("run(%q) starts with %q, want %q", tt.give, first, tt.wantFirst)
			}
			if tt.wantFirst == "" && first != "edged is the umedge appliance daemon." {
				t.Errorf("run(%q) starts with %q, want the usage", tt.give, first)
			}
		})
	}
}

// TestSubcommands: the subcommands that take no daemon still work.
func TestSubcommands(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		give       []string
		wantCode   int
		wantStdout string // prefix
	}{
		{name: "version", give: []string{"version"}, wantCode: 0, wantStdout: "edged "},
		{name: "demo-pki", give: []string{"demo-pki", dir}, wantCode: 0, wantStdout: "demo CA " + filepath.Join(dir, "ca.pem")},
		{name: "config check of a missing file", give: []string{"config", "check", filepath.Join(dir, "none.toml")}, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer

			code := run(tt.give, &stdout, &stderr)

			if code != tt.wantCode || !strings.HasPrefix(stdout.String(), tt.wantStdout) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d and stdout %q...", tt.give, code, stdout.String(), stderr.String(), tt.wantCode, tt.wantStdout)
			}
		})
	}
}
