package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// repoRoot walks up from the package directory to the go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		wantErrs  []string // "LINE PATH" of every problem, in order; nil = valid
		wantCheck func(t *testing.T, c *Config)
	}{
		{
			name: "tcp mode over defaults",
			give: "[sip]\nmode = \"tcp\"\nlisten = [\"0.0.0.0\"]\n",
			wantCheck: func(t *testing.T, c *Config) {
				t.Helper()
				if c.SIP.TCPPort != 5060 || !slices.Equal(c.SIP.Listen, []string{"0.0.0.0"}) || c.Log.Level != "info" {
					t.Errorf("got %+v", c.SIP)
				}
			},
		},
		{
			name: "durations",
			give: "[sip]\nmode = \"tcp\"\nretry_after = \"2m\"\n[plugin_host]\ncall_timeout = \"250ms\"\n",
			wantCheck: func(t *testing.T, c *Config) {
				t.Helper()
				if c.SIP.RetryAfter.Seconds() != 120 || c.PluginHost.CallTimeout.Milliseconds() != 250 {
					t.Errorf("got retry_after %v call_timeout %v", c.SIP.RetryAfter, c.PluginHost.CallTimeout)
				}
			},
		},
		{
			name: "plugin settings kept raw",
			give: "[sip]\nmode = \"tcp\"\n[plugins.r]\nkind = \"router\"\nbinary = \"b\"\nsha256 = \"" + strings.Repeat("a", 64) +
				"\"\n[plugins.r.settings.gateways.lab]\nstatus = \"Enabled\"\nanything_goes = [1, 2]\n[[plugins.r.settings.pools.p.backends]]\nname = \"x\"\n",
			wantCheck: func(t *testing.T, c *Config) {
				t.Helper()
				var got map[string]any
				if _, err := toml.Decode(string(c.Plugins["r"].Settings.TOML), &got); err != nil {
					t.Fatalf("settings are not TOML: %v", err)
				}
				gw := got["gateways"].(map[string]any)["lab"].(map[string]any)
				if gw["status"] != "Enabled" {
					t.Errorf("settings = %v", got)
				}
				if n := c.Line("plugins.r.settings.gateways.lab.status"); n != 8 {
					t.Errorf("Line(status) = %d, want 8", n)
				}
				if n := c.Line("plugins.r.settings.pools.p.backends[0].name"); n != 11 {
					t.Errorf("Line(backends[0].name) = %d, want 11", n)
				}
				fe := c.Problem("plugins.r.settings.gateways.lab.missing", errors.New("required"))
				if fe.File != "t.toml" || fe.Line != 7 {
					t.Errorf("Problem() = %+v, want t.toml line 7", fe)
				}
			},
		},
		{
			name: "no settings table",
			give: "[sip]\nmode = \"tcp\"\n[plugins.r]\nkind = \"router\"\nbinary = \"b\"\nsha256 = \"" + strings.Repeat("a", 64) + "\"\n",
			wantCheck: func(t *testing.T, c *Config) {
				t.Helper()
				if len(c.Plugins["r"].Settings.TOML) != 0 {
					t.Errorf("settings = %q, want empty", c.Plugins["r"].Settings.TOML)
				}
			},
		},
		{
			name: "numbers: an integer or a float for a rate",
			give: "[sip]\nmode = \"tcp\"\n[sbc]\ncalls_per_second = 5\n[sbc.peers.trunk]\ncalls_per_second = 0.5\n",
			wantCheck: func(t *testing.T, c *Config) {
				t.Helper()
				if c.SBC.CallsPerSecond != 5 || c.SBC.Peers["trunk"].CallsPerSecond != 0.5 {
					t.Errorf("calls_per_second %v, trunk's %v", c.SBC.CallsPerSecond, c.SBC.Peers["trunk"].CallsPerSecond)
				}
			},
		},
		{
			name:     "a rate that is no number",
			give:     "[sip]\nmode = \"tcp\"\n[sbc]\ncalls_per_second = \"5/s\"\n",
			wantErrs: []string{"4 sbc.calls_per_second"},
		},
		{
			name:     "unknown keys everywhere",
			give:     "lgo = 1\n[sip]\nmode = \"tcp\"\ntcp_prot = 1\n[sip.tls]\nciphers = []\n[plugins.r]\nkind = \"router\"\nbin = \"b\"\n[extra.table]\n",
			wantErrs: []string{"1 lgo", "4 sip.tcp_prot", "6 sip.tls.ciphers", "7 plugins.r.binary", "7 plugins.r.sha256", "9 plugins.r.bin", "10 extra"},
		},
		{
			name: "wrong types, all reported",
			give: "[sip]\nmode = \"tcp\"\ntcp_port = \"5060\"\nudp = \"yes\"\nlisten = \"127.0.0.1\"\nretry_after = 30\n" +
				"tcp_idle_timeout = \"5 minutes\"\n[media]\nport_min = 1.5\n[plugins.r]\nsettings = 5\n",
			wantErrs: []string{"3 sip.tcp_port", "4 sip.udp", "5 sip.listen", "6 sip.retry_after", "7 sip.tcp_idle_timeout",
				"9 media.port_min", "10 plugins.r.kind", "10 plugins.r.binary", "10 plugins.r.sha256", "11 plugins.r.settings"},
		},
		{
			name:     "table where a value belongs",
			give:     "[sip.mode]\nx = 1\n[log]\nlevel = [\"info\"]\n",
			wantErrs: []string{"1 sip.mode", "1 sip.tls.cert", "1 sip.tls.key", "1 sip.tls.client_ca", "4 log.level"},
		},
		{
			name:     "syntax error",
			give:     "[sip]\nmode = \"tcp\"\ntcp_port = = 1\n",
			wantErrs: []string{"3 "},
		},
		{
			name:     "duplicate key is a syntax error",
			give:     "[sip]\nmode = \"tcp\"\nmode = \"tls\"\n",
			wantErrs: []string{"3 "},
		},
		{
			name:     "mode without certificates points at the mode line",
			give:     "[log]\n\n[sip]\nfqdn = \"x.example.net\"\nmode = \"tls\"\n",
			wantErrs: []string{"5 sip.tls.cert", "5 sip.tls.key", "5 sip.tls.client_ca"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.give))
			if tt.wantErrs == nil {
				if err != nil {
					t.Fatalf("Parse() = %v, want nil", err)
				}
				tt.wantCheck(t, c)
				return
			}
			if err == nil {
				t.Fatalf("Parse() = nil, want %v", tt.wantErrs)
			}
			if c != nil {
				t.Errorf("Parse() returned a config along with errors")
			}
			var got []string
			for _, fe := range problems(err) {
				if fe.File != "t.toml" {
					t.Errorf("problem %v: File = %q, want t.toml", fe, fe.File)
				}
				got = append(got, fmt.Sprintf("%d %s", fe.Line, fe.Path))
			}
			if !slices.Equal(got, tt.wantErrs) {
				t.Errorf("problems:\n%v\ngot  %q\nwant %q", err, got, tt.wantErrs)
			}
		})
	}
}

func TestParseSyntaxErrorSentinel(t *testing.T) {
	_, err := Parse("bad.toml", []byte("a = \n"))
	if !errors.Is(err, ErrSyntax) {
		t.Fatalf("Parse() = %v, want ErrSyntax", err)
	}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		t.Errorf("Parse() exposes toml.ParseError; dependency errors must not leak")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load() = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadNotARegularFile: a config path that is a FIFO, a directory or a
// device (a data partition edited on another machine, a mistake) is refused
// at once with the reason, never waited on: the appliance's init reads the
// file before it starts edged, and a FIFO with no writer would block it
// forever (no edged, no admin API).
func TestLoadNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.toml")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"fifo": fifo, "directory": sub, "device": "/dev/zero"} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Load(path); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Load(%s) = %v, want ErrNotRegular naming the file", name, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Load(%s) hangs", name)
			}
		})
	}
}

// TestLoadTooLarge: a config over MaxFileBytes is refused without being
// read into memory.
func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.toml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if _, err := Load(p); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load() of %d bytes = %v, want ErrTooLarge naming the file", MaxFileBytes+1, err)
	}
}

// certsPlaceholder in testdata inputs is replaced by a directory holding a
// fresh test PKI (see certNames), and back again in the output.
const certsPlaceholder = "TESTCERTS"

func TestLoadGolden(t *testing.T) {
	pki := newTestPKI(t, "umedge.local", "edge.example.net")
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".toml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.ReplaceAll(raw, []byte(certsPlaceholder), []byte(pki.Dir))

			var got string
			c, err := Parse(in, data)
			if err != nil {
				got = err.Error() + "\n"
			} else {
				got = dump(t, c)
			}
			got = strings.ReplaceAll(got, pki.Dir, certsPlaceholder)

			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", in, golden, got, want)
			}
		})
	}
}

// dump writes a config as normalized TOML: the struct encoded with sorted
// keys, plugin settings decoded and re-encoded under their plugin.
func dump(t *testing.T, c *Config) string {
	t.Helper()
	cp := *c
	cp.Plugins = nil
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cp); err != nil {
		t.Fatalf("encode config: %v", err)
	}
	plugins := map[string]any{}
	for name, p := range c.Plugins {
		settings := map[string]any{}
		if _, err := toml.Decode(string(p.Settings.TOML), &settings); err != nil {
			t.Fatalf("decode settings of %s: %v", name, err)
		}
		plugins[name] = map[string]any{"kind": string(p.Kind), "binary": p.Binary, "sha256": p.SHA256, "settings": settings}
	}
	if len(plugins) > 0 {
		buf.WriteString("\n")
		if err := toml.NewEncoder(&buf).Encode(map[string]any{"plugins": plugins}); err != nil {
			t.Fatalf("encode plugins: %v", err)
		}
	}
	return buf.String()
}

// TestShippedConfigs loads every configs/*.toml. A shipped file may name TLS
// files that exist only on the appliance (edge.toml: /data/etc/umedge/tls/…).
// For such a file the test requires that Load fails for exactly those
// missing files and nothing else, then loads a copy whose TLS paths point to
// a freshly generated PKI valid for the file's sip.fqdn, which must pass.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "configs", "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"umedge.toml", "edge.toml", "um.toml"} {
		if !slices.ContainsFunc(files, func(f string) bool { return filepath.Base(f) == want }) {
			t.Errorf("configs/%s is missing", want)
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var peek struct {
				SIP struct {
					FQDN string `toml:"fqdn"`
					TLS  struct {
						Cert     string `toml:"cert"`
						Key      string `toml:"key"`
						ClientCA string `toml:"client_ca"`
					} `toml:"tls"`
				} `toml:"sip"`
			}
			if _, err := toml.Decode(string(data), &peek); err != nil {
				t.Fatalf("decode: %v", err)
			}
			tlsFiles := map[string]string{
				"sip.tls.cert": peek.SIP.TLS.Cert, "sip.tls.key": peek.SIP.TLS.Key, "sip.tls.client_ca": peek.SIP.TLS.ClientCA,
			}
			missing := map[string]string{}
			for key, p := range tlsFiles {
				if _, err := os.Stat(p); p != "" && errors.Is(err, fs.ErrNotExist) {
					missing[key] = p
				}
			}

			_, err = Load(file)
			if len(missing) == 0 {
				if err != nil {
					t.Fatalf("Load(%s):\n%v", file, err)
				}
				return
			}

			// Only the appliance-side TLS files may be reported.
			ps := problems(err)
			if len(ps) != len(missing) {
				t.Fatalf("Load(%s) = %v, want exactly the missing TLS files %v", file, err, missing)
			}
			for _, fe := range ps {
				if _, ok := missing[fe.Path]; !ok || !errors.Is(fe, ErrInvalid) || !errors.Is(fe, fs.ErrNotExist) || fe.Line == 0 {
					t.Errorf("unexpected problem %v", fe)
				}
			}

			pki := newTestPKI(t, peek.SIP.FQDN)
			subst := map[string]string{"sip.tls.cert": pki.Cert, "sip.tls.key": pki.Key, "sip.tls.client_ca": pki.CA}
			text := string(data)
			for key, p := range missing {
				old := fmt.Sprintf("%q", p)
				if strings.Count(text, old) != 1 {
					t.Fatalf("%s: %s appears %d times, want once", file, old, strings.Count(text, old))
				}
				text = strings.Replace(text, old, fmt.Sprintf("%q", subst[key]), 1)
			}
			cp := filepath.Join(t.TempDir(), filepath.Base(file))
			if err := os.WriteFile(cp, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(cp); err != nil {
				t.Fatalf("Load(%s with test certificates):\n%v", file, err)
			}
		})
	}
}
