package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/pluginhost"
	"github.com/umedge/umedge/core/sdk/base"
)

// checkSite is a config file with working TLS files and one router plugin
// whose binary is a script that must never run: every check below fails
// before the plugin would start.
type checkSite struct {
	dir, pluginDir, binary string
	pki                    devpki.Files
	binarySum              string
}

func newCheckSite(t *testing.T) *checkSite {
	t.Helper()
	dir := t.TempDir()
	pki, err := devpki.Write(filepath.Join(dir, "tls"), demoServer, demoGateway)
	if err != nil {
		t.Fatal(err)
	}
	s := &checkSite{dir: dir, pluginDir: filepath.Join(dir, "plugins"), pki: pki}
	if err := os.Mkdir(s.pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.binary = filepath.Join(s.pluginDir, "umedge-plugin-umrouter")
	script := []byte("#!/bin/sh\nexit 1\n")
	if err := os.WriteFile(s.binary, script, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(script)
	s.binarySum = hex.EncodeToString(sum[:])
	return s
}

// render writes the config with the given sip.tls files and plugin pin
// ("none": no plugin table) and returns its path and text.
func (s *checkSite) render(t *testing.T, cert, key, ca, pin, sums string) (string, string) {
	t.Helper()
	text := strings.Join([]string{
		`[sip]`,
		`fqdn = "umedge.local"`,
		`listen = ["127.0.0.1"]`,
		`mode = "dual"`,
		``,
		`[sip.tls]`,
		`cert = "` + cert + `"`,
		`key = "` + key + `"`,
		`client_ca = "` + ca + `"`,
		``,
		`[plugin_host]`,
		`dir = "` + s.pluginDir + `"`,
		`sha256sums = "` + sums + `"`,
		``,
	}, "\n")
	if pin != "none" {
		text += "\n" + strings.Join([]string{
			`[plugins.umrouter]`,
			`kind = "router"`,
			`binary = "umedge-plugin-umrouter"`,
			`sha256 = "` + pin + `"`,
			``,
		}, "\n")
	}
	path := filepath.Join(s.dir, "umedge.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, text
}

// lineOf is the 1-based line of text that starts with prefix.
func lineOf(t *testing.T, text, prefix string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return 0
}

// TestConfigCheckOutput: `edged config check` prints every problem as
// FILE:LINE: key.path: message, one per line, for problems whose cause
// wraps two errors too (load certificate + stat) and for plugin pins.
func TestConfigCheckOutput(t *testing.T) {
	s := newCheckSite(t)
	missing := filepath.Join(s.dir, "tls", "missing.pem")
	wrongPin := strings.Repeat("ab", 32)
	sums := filepath.Join(s.dir, "SHA256SUMS") // not beside the binaries it pins
	if err := os.WriteFile(sums, []byte(wrongPin+"  umedge-plugin-umrouter\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noSuchFile := "stat " + missing + ": no such file or directory"

	tests := []struct {
		name                      string
		giveCert, giveKey, giveCA string
		givePin, giveSums         string
		giveRemoveBinary          bool
		wantLines                 []string // %s is the file; {key} the line of that key
		wantOK                    bool
	}{
		{name: "a good file is ok", givePin: "none", wantOK: true},
		{name: "missing certificate", giveCert: missing,
			wantLines: []string{"%s:{cert}: sip.tls.cert: invalid: load certificate: " + noSuchFile}},
		{name: "missing key", giveKey: missing,
			wantLines: []string{"%s:{key}: sip.tls.key: invalid: load private key: " + noSuchFile}},
		{name: "missing client CA", giveCA: missing,
			wantLines: []string{"%s:{client_ca}: sip.tls.client_ca: invalid: load CA bundle: " + noSuchFile}},
		{name: "all three missing", giveCert: missing, giveKey: missing, giveCA: missing,
			wantLines: []string{
				"%s:{cert}: sip.tls.cert: invalid: load certificate: " + noSuchFile,
				"%s:{key}: sip.tls.key: invalid: load private key: " + noSuchFile,
				"%s:{client_ca}: sip.tls.client_ca: invalid: load CA bundle: " + noSuchFile,
			}},
		{name: "plugin sha256 mismatch", givePin: wrongPin,
			wantLines: []string{fmt.Sprintf("%%s:{sha256}: plugins.umrouter.sha256: pluginhost: sha256 mismatch: %s: expected %s, actual %s",
				s.binary, wrongPin, s.binarySum)}},
		{name: "sha256 mismatch with the pin in sha256sums", givePin: "-", giveSums: sums,
			wantLines: []string{fmt.Sprintf("%%s:{sha256sums}: plugin_host.sha256sums: pluginhost: sha256 mismatch: %s: expected %s, actual %s",
				s.binary, wrongPin, s.binarySum)}},
		{name: "plugin that exits before the handshake",
			wantLines: []string{"%s:{[plugins.umrouter]}: plugins.umrouter: start " + s.binary +
				": pluginhost: plugin exited before the handshake (exit status 1)"}},
		{name: "plugin binary missing", giveRemoveBinary: true,
			wantLines: []string{"%s:{binary}: plugins.umrouter.binary: plugin binary: stat " + s.binary + ": no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := s.binarySum
			switch tt.givePin {
			case "-":
				pin = ""
			case "none":
				pin = "none"
			case "":
			default:
				pin = tt.givePin
			}
			path, text := s.render(t, cmp(tt.giveCert, s.pki.ServerCert), cmp(tt.giveKey, s.pki.ServerKey),
				cmp(tt.giveCA, s.pki.CA), pin, tt.giveSums)
			if tt.giveRemoveBinary {
				if err := os.Rename(s.binary, s.binary+".away"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Rename(s.binary+".away", s.binary) })
			}
			var stdout, stderr bytes.Buffer

			code := checkConfig(context.Background(), path, &stdout, &stderr)

			if tt.wantOK {
				if code != 0 || stdout.String() != path+": ok\n" || stderr.Len() != 0 {
					t.Fatalf("config check = %d, stdout %q, stderr %q; want 0 and %q", code, stdout.String(), stderr.String(), path+": ok")
				}
				return
			}
			want := make([]string, len(tt.wantLines))
			for i, l := range tt.wantLines {
				l = fmt.Sprintf(l, path)
				for _, k := range []string{"cert", "key", "client_ca", "sha256sums", "sha256", "binary"} {
					if strings.Contains(l, "{"+k+"}") {
						l = strings.ReplaceAll(l, "{"+k+"}", fmt.Sprint(lineOf(t, text, k+" = ")))
					}
				}
				if strings.Contains(l, "{[plugins.umrouter]}") {
					l = strings.ReplaceAll(l, "{[plugins.umrouter]}", fmt.Sprint(lineOf(t, text, "[plugins.umrouter]")))
				}
				want[i] = l
			}
			if code != 1 || stdout.Len() != 0 {
				t.Errorf("config check = %d, stdout %q; want 1 and nothing on stdout", code, stdout.String())
			}
			if got := strings.TrimSuffix(stderr.String(), "\n"); got != strings.Join(want, "\n") {
				t.Errorf("config check printed\n%s\nwant\n%s", got, strings.Join(want, "\n"))
			}
		})
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestPrintProblems: one line per problem, never a bare cause on a line of
// its own, and a line break inside a message cannot start a line.
func TestPrintProblems(t *testing.T) {
	stat := &os.PathError{Op: "stat", Path: "ca.pem", Err: os.ErrNotExist}
	tests := []struct {
		name string
		give error
		want string
	}{
		{
			name: "two causes in one problem stay on its line",
			give: errors.Join(&config.FieldError{File: "a.toml", Line: 9, Path: "sip.tls.client_ca",
				Err: fmt.Errorf("%w: load CA bundle: %w", config.ErrInvalid, stat)}),
			want: "a.toml:9: sip.tls.client_ca: invalid: load CA bundle: stat ca.pem: file does not exist\n",
		},
		{
			name: "a join inside a problem prints each part with the key",
			give: &config.FieldError{File: "a.toml", Line: 4, Path: "plugins.umrouter.sha256",
				Err: errors.Join(errors.New("one"), errors.New("two"))},
			want: "a.toml:4: plugins.umrouter.sha256: one\na.toml:4: plugins.umrouter.sha256: two\n",
		},
		{
			name: "a line break inside a message is escaped",
			give: &config.FieldError{File: "a.toml", Line: 2, Path: "plugins.x.settings.y",
				Err: errors.New("bad\na.toml:1: sip.fqdn: forged")},
			want: `a.toml:2: plugins.x.settings.y: bad\na.toml:1: sip.fqdn: forged` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printProblems(&b, tt.give)
			if b.String() != tt.want {
				t.Errorf("printProblems printed\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// TestSpecProblems: what the plugin host says about one plugin is tied to
// the key that holds the cause, with its line.
func TestSpecProblems(t *testing.T) {
	text := strings.Join([]string{
		`[sip]`,                             // 1
		`mode = "tcp"`,                      // 2
		``,                                  // 3
		`[plugins.umrouter]`,                // 4
		`kind = "router"`,                   // 5
		`binary = "umedge-plugin-umrouter"`, // 6
		`sha256 = "` + strings.Repeat("ab", 32) + `"`, // 7
		``, // 8
		`[plugins.umrouter.settings.gateways.lab]`, // 9
		`status = "Sometimes"`,                     // 10
		``,
	}, "\n")
	cfg, err := config.Parse("edge.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	spec := pluginSpecs(cfg)[0]
	// Host.Check wraps each cause as "plugin NAME: CAUSE" and joins them.
	tests := []struct {
		name string
		give error
		want []string
	}{
		{
			name: "settings the plugin refuses",
			give: errors.Join(fmt.Errorf("plugin umrouter: configure: %w", &base.ConfigError{Problems: []base.Problem{
				{Path: "gateways.lab.status", Message: `"Sometimes" is not one of Enabled, Disabled, Draining`},
				{Path: "gateways.lab.fqdn", Message: "required"},
			}})),
			want: []string{
				`edge.toml:10: plugins.umrouter.settings.gateways.lab.status: "Sometimes" is not one of Enabled, Disabled, Draining`,
				`edge.toml:9: plugins.umrouter.settings.gateways.lab.fqdn: required`,
			},
		},
		{
			name: "kind mismatch",
			give: errors.Join(fmt.Errorf("plugin umrouter: %w", fmt.Errorf("%w: x says it is a \"worker\" plugin", pluginhost.ErrKindMismatch))),
			want: []string{`edge.toml:5: plugins.umrouter.kind: pluginhost: plugin kind mismatch: x says it is a "worker" plugin`},
		},
		{
			name: "two failures of one plugin",
			give: errors.Join(
				fmt.Errorf("plugin umrouter: %w", fmt.Errorf("%w: a", pluginhost.ErrChecksumMismatch)),
				fmt.Errorf("plugin umrouter: %w", fmt.Errorf("%w: b", pluginhost.ErrAPIVersion)),
			),
			want: []string{
				`edge.toml:7: plugins.umrouter.sha256: pluginhost: sha256 mismatch: a`,
				`edge.toml:6: plugins.umrouter.binary: pluginhost: unsupported plugin api version: b`,
			},
		},
		{
			name: "a cause that names the plugin otherwise keeps its text",
			give: errors.New("plugin umrouterx: odd"),
			want: []string{`edge.toml:4: plugins.umrouter: plugin umrouterx: odd`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printProblems(&b, errors.Join(specProblems(cfg, spec, tt.give)...))
			if got := strings.TrimSuffix(b.String(), "\n"); got != strings.Join(tt.want, "\n") {
				t.Errorf("printed\n%s\nwant\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}
