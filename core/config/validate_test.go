package config

import (
	"errors"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// validateCase mutates a valid config and names the problem it expects.
type validateCase struct {
	name     string
	give     func(c *Config)
	wantPath string // "" means the config must be valid
	wantErr  error  // sentinel (or cause) the problem must wrap
	wantText string // optional substring of the problem's text
}

// validConfig is Default() in dual mode with working TLS files, plus one
// router plugin.
func validConfig(t *testing.T) Config {
	t.Helper()
	pki := newTestPKI(t, "umedge.local")
	c := Default()
	c.SIP.TLS.Cert = pki.Cert
	c.SIP.TLS.Key = pki.Key
	c.SIP.TLS.ClientCA = pki.CA
	c.Plugins = map[string]Plugin{
		"umrouter": {Kind: base.KindRouter, Binary: "umedge-plugin-umrouter", SHA256: strings.Repeat("ab", 32)},
	}
	return c
}

func runValidateCases(t *testing.T, tests []validateCase) {
	t.Helper()
	base := validConfig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clone(base)
			tt.give(&c)

			err := c.Validate()

			if tt.wantPath == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			fe := findProblem(err, tt.wantPath)
			if fe == nil {
				t.Fatalf("Validate() = %v, want a *FieldError at %q", err, tt.wantPath)
			}
			if tt.wantErr != nil && !errors.Is(fe, tt.wantErr) {
				t.Errorf("problem at %s = %v, want errors.Is %v", tt.wantPath, fe, tt.wantErr)
			}
			if tt.wantText != "" && !strings.Contains(fe.Error(), tt.wantText) {
				t.Errorf("problem at %s = %q, want it to mention %q", tt.wantPath, fe.Error(), tt.wantText)
			}
		})
	}
}

// clone copies the slices and maps a test case may mutate.
func clone(c Config) Config {
	c.SIP.Listen = append([]string(nil), c.SIP.Listen...)
	c.SIP.TLS.CipherSuites = append([]string(nil), c.SIP.TLS.CipherSuites...)
	plugins := make(map[string]Plugin, len(c.Plugins))
	for k, v := range c.Plugins {
		plugins[k] = v
	}
	c.Plugins = plugins
	c.SBC.Peers = maps.Clone(c.SBC.Peers)
	return c
}

// problems flattens a joined error into its *FieldErrors.
func problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func findProblem(err error, path string) *FieldError {
	for _, fe := range problems(err) {
		if fe.Path == path {
			return fe
		}
	}
	return nil
}

func TestValidateDefault(t *testing.T) {
	c := Default()
	err := c.Validate()
	// Default mode is dual, which needs site certificates: exactly those
	// three keys are missing, nothing else.
	got := problems(err)
	want := []string{"sip.tls.cert", "sip.tls.key", "sip.tls.client_ca"}
	if len(got) != len(want) {
		t.Fatalf("Validate() = %v, want problems at %v", err, want)
	}
	for _, p := range want {
		if fe := findProblem(err, p); fe == nil || !errors.Is(fe, ErrRequired) {
			t.Errorf("problem at %s = %v, want ErrRequired", p, fe)
		}
	}
	c.SIP.Mode = ModeTCP
	if err := c.Validate(); err != nil {
		t.Errorf("Default() in tcp mode: Validate() = %v, want nil", err)
	}
}

func TestValidateLog(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "valid", give: func(*Config) {}},
		{name: "every level", give: func(c *Config) { c.Log.Level = "debug" }},
		{name: "json format", give: func(c *Config) { c.Log.Format = "json" }},
		{name: "unknown level", give: func(c *Config) { c.Log.Level = "trace" },
			wantPath: "log.level", wantErr: ErrInvalid, wantText: `"trace"`},
		{name: "level is case sensitive", give: func(c *Config) { c.Log.Level = "INFO" },
			wantPath: "log.level", wantErr: ErrInvalid},
		{name: "unknown format", give: func(c *Config) { c.Log.Format = "logfmt" },
			wantPath: "log.format", wantErr: ErrInvalid},
	})
}

func TestValidateAdmin(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "disabled", give: func(c *Config) { c.Admin.Listen = "" }},
		{name: "ipv6 loopback", give: func(c *Config) { c.Admin.Listen = "[::1]:9060" }},
		{name: "localhost", give: func(c *Config) { c.Admin.Listen = "localhost:9060" }},
		// Remote listeners need a token file: TestValidateAdminToken.
		{name: "no port", give: func(c *Config) { c.Admin.Listen = "127.0.0.1" },
			wantPath: "admin.listen", wantErr: ErrInvalid, wantText: "not host:port"},
		{name: "named port", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:http" },
			wantPath: "admin.listen", wantErr: ErrInvalid},
		{name: "port zero", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:0" },
			wantPath: "admin.listen", wantErr: ErrOutOfRange},
		{name: "port too big", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:70000" },
			wantPath: "admin.listen", wantErr: ErrOutOfRange},
		{name: "remote without allow_remote", give: func(c *Config) { c.Admin.Listen = "192.0.2.1:9060" },
			wantPath: "admin.listen", wantErr: ErrInvalid, wantText: "allow_remote"},
		{name: "wildcard without allow_remote", give: func(c *Config) { c.Admin.Listen = ":9060" },
			wantPath: "admin.listen", wantErr: ErrInvalid, wantText: "every address"},
		{name: "host name without allow_remote", give: func(c *Config) { c.Admin.Listen = "edge.example.net:9060" },
			wantPath: "admin.listen", wantErr: ErrInvalid},
		{name: "bad host", give: func(c *Config) { c.Admin.Listen = "bad_host!:9060" },
			wantPath: "admin.listen", wantErr: ErrInvalid},
		{name: "firmware upload", give: func(c *Config) { c.Admin.FirmwareDir = "/data/firmware" }},
		{name: "relative firmware dir", give: func(c *Config) { c.Admin.FirmwareDir = "data/firmware" },
			wantPath: "admin.firmware_dir", wantErr: ErrInvalid, wantText: "absolute"},
		{name: "firmware limit too small", give: func(c *Config) { c.Admin.FirmwareMaxBytes = 1000 },
			wantPath: "admin.firmware_max_bytes", wantErr: ErrOutOfRange},
		{name: "firmware limit too big", give: func(c *Config) { c.Admin.FirmwareMaxBytes = 2 << 30 },
			wantPath: "admin.firmware_max_bytes", wantErr: ErrOutOfRange},
	})
}

func TestValidateSIP(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "tcp mode without tls files", give: func(c *Config) { c.SIP.Mode = ModeTCP; c.SIP.TLS = TLS{MinVersion: "1.2"} }},
		{name: "tls mode", give: func(c *Config) { c.SIP.Mode = ModeTLS }},
		{name: "wildcards", give: func(c *Config) { c.SIP.Listen = []string{"::"} }},
		{name: "one ask worker", give: func(c *Config) { c.SIP.AskWorkers = 1; c.SIP.AskQueue = 1 }},
		{name: "no fqdn", give: func(c *Config) { c.SIP.FQDN = "" },
			wantPath: "sip.fqdn", wantErr: ErrRequired},
		{name: "fqdn is an ip", give: func(c *Config) { c.SIP.FQDN = "192.0.2.1" },
			wantPath: "sip.fqdn", wantErr: ErrInvalid},
		{name: "fqdn with bad label", give: func(c *Config) { c.SIP.FQDN = "-bad.example.net" },
			wantPath: "sip.fqdn", wantErr: ErrInvalid},
		{name: "no listen address", give: func(c *Config) { c.SIP.Listen = nil },
			wantPath: "sip.listen", wantErr: ErrRequired},
		{name: "host name in listen", give: func(c *Config) { c.SIP.Listen = []string{"127.0.0.1", "localhost"} },
			wantPath: "sip.listen[1]", wantErr: ErrInvalid},
		{name: "duplicate listen", give: func(c *Config) { c.SIP.Listen = []string{"127.0.0.1", "::1", "127.0.0.1"} },
			wantPath: "sip.listen[2]", wantErr: ErrConflict, wantText: "listed twice"},
		{name: "v4-mapped duplicate", give: func(c *Config) { c.SIP.Listen = []string{"127.0.0.1", "::ffff:127.0.0.1"} },
			wantPath: "sip.listen[1]", wantErr: ErrConflict},
		{name: "v4 wildcard overlaps", give: func(c *Config) { c.SIP.Listen = []string{"0.0.0.0", "127.0.0.1"} },
			wantPath: "sip.listen[1]", wantErr: ErrConflict, wantText: "overlaps"},
		{name: "v6 wildcard overlaps v4", give: func(c *Config) { c.SIP.Listen = []string{"127.0.0.1", "::"} },
			wantPath: "sip.listen[1]", wantErr: ErrConflict},
		{name: "unknown mode", give: func(c *Config) { c.SIP.Mode = "udp" },
			wantPath: "sip.mode", wantErr: ErrInvalid},
		{name: "tcp port zero", give: func(c *Config) { c.SIP.TCPPort = 0 },
			wantPath: "sip.tcp_port", wantErr: ErrOutOfRange},
		{name: "tls port too big", give: func(c *Config) { c.SIP.TLSPort = 65536 },
			wantPath: "sip.tls_port", wantErr: ErrOutOfRange},
		{name: "udp buffer too small", give: func(c *Config) { c.SIP.UDPBufferBytes = 4096 },
			wantPath: "sip.udp_buffer_bytes", wantErr: ErrOutOfRange},
		{name: "udp buffer too big", give: func(c *Config) { c.SIP.UDPBufferBytes = 1 << 30 },
			wantPath: "sip.udp_buffer_bytes", wantErr: ErrOutOfRange},
		{name: "dscp unmarked", give: func(c *Config) { c.SIP.DSCP = 0 }},
		{name: "dscp EF", give: func(c *Config) { c.SIP.DSCP = 46 }},
		{name: "dscp largest", give: func(c *Config) { c.SIP.DSCP = 63 }},
		{name: "dscp negative", give: func(c *Config) { c.SIP.DSCP = -1 },
			wantPath: "sip.dscp", wantErr: ErrOutOfRange, wantText: "-1 not in 0..63"},
		{name: "dscp past six bits", give: func(c *Config) { c.SIP.DSCP = 64 },
			wantPath: "sip.dscp", wantErr: ErrOutOfRange, wantText: "64 not in 0..63"},
		{name: "idle timeout zero", give: func(c *Config) { c.SIP.TCPIdleTimeout = Duration{} },
			wantPath: "sip.tcp_idle_timeout", wantErr: ErrOutOfRange},
		{name: "connection limits set", give: func(c *Config) {
			c.SIP.MaxConnections, c.SIP.MaxConnectionsPerSource, c.SIP.TCPWriteTimeout = 5000, 8, Duration{time.Second}
		}},
		{name: "negative max connections", give: func(c *Config) { c.SIP.MaxConnections = -1 },
			wantPath: "sip.max_connections", wantErr: ErrOutOfRange},
		{name: "max connections too many", give: func(c *Config) { c.SIP.MaxConnections = 1<<20 + 1 },
			wantPath: "sip.max_connections", wantErr: ErrOutOfRange},
		{name: "per-source limit zero", give: func(c *Config) { c.SIP.MaxConnectionsPerSource = 0 },
			wantPath: "sip.max_connections_per_source", wantErr: ErrOutOfRange},
		{name: "write timeout zero", give: func(c *Config) { c.SIP.TCPWriteTimeout = Duration{} },
			wantPath: "sip.tcp_write_timeout", wantErr: ErrOutOfRange},
		{name: "write timeout too long", give: func(c *Config) { c.SIP.TCPWriteTimeout = Duration{2 * time.Minute} },
			wantPath: "sip.tcp_write_timeout", wantErr: ErrOutOfRange},
		{name: "retry after too long", give: func(c *Config) { c.SIP.RetryAfter = Duration{2 * time.Hour} },
			wantPath: "sip.retry_after", wantErr: ErrOutOfRange},
		{name: "retry after fractional", give: func(c *Config) { c.SIP.RetryAfter = Duration{1500 * time.Millisecond} },
			wantPath: "sip.retry_after", wantErr: ErrInvalid, wantText: "whole number of seconds"},
		{name: "no ask workers", give: func(c *Config) { c.SIP.AskWorkers = 0 },
			wantPath: "sip.ask_workers", wantErr: ErrOutOfRange},
		{name: "ask queue too big", give: func(c *Config) { c.SIP.AskQueue = 1_000_001 },
			wantPath: "sip.ask_queue", wantErr: ErrOutOfRange},
		{name: "ask timeout beyond Timer B's reach", give: func(c *Config) { c.SIP.AskTimeout = Duration{time.Minute} },
			wantPath: "sip.ask_timeout", wantErr: ErrOutOfRange},
	})
}

func TestValidateSIPTLS(t *testing.T) {
	pki := newTestPKI(t, "umedge.local")
	other := newTestPKI(t, "other.example.net")
	dir := t.TempDir()
	runValidateCases(t, []validateCase{
		{name: "sec1 key", give: func(c *Config) { c.SIP.TLS.Key = pki.ECKey; c.SIP.TLS.Cert = pki.Cert }},
		{name: "tls 1.3", give: func(c *Config) { c.SIP.TLS.MinVersion = "1.3" }},
		{name: "secure suites", give: func(c *Config) {
			c.SIP.TLS.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"}
		}},
		{name: "files checked in tcp mode too", give: func(c *Config) { c.SIP.Mode = ModeTCP; c.SIP.TLS.Key = pki.Garbage },
			wantPath: "sip.tls.key", wantErr: ErrInvalid},
		{name: "cert without key in tcp mode", give: func(c *Config) { c.SIP.Mode = ModeTCP; c.SIP.TLS.Key = "" },
			wantPath: "sip.tls.key", wantErr: ErrRequired},
		{name: "dual without cert", give: func(c *Config) { c.SIP.TLS.Cert = "" },
			wantPath: "sip.tls.cert", wantErr: ErrRequired, wantText: `sip.mode "dual"`},
		{name: "tls without key", give: func(c *Config) { c.SIP.Mode = ModeTLS; c.SIP.TLS.Key = "" },
			wantPath: "sip.tls.key", wantErr: ErrRequired},
		{name: "dual without client ca", give: func(c *Config) { c.SIP.TLS.ClientCA = "" },
			wantPath: "sip.tls.client_ca", wantErr: ErrRequired},
		{name: "missing cert file", give: func(c *Config) { c.SIP.TLS.Cert = pki.Missing },
			wantPath: "sip.tls.cert", wantErr: fs.ErrNotExist},
		{name: "cert is a directory", give: func(c *Config) { c.SIP.TLS.Cert = dir },
			wantPath: "sip.tls.cert", wantErr: ErrInvalid, wantText: "not a regular file"},
		{name: "cert is a device", give: func(c *Config) { c.SIP.TLS.Cert = os.DevNull },
			wantPath: "sip.tls.cert", wantErr: errNotRegular},
		{name: "cert not pem", give: func(c *Config) { c.SIP.TLS.Cert = pki.Garbage },
			wantPath: "sip.tls.cert", wantErr: errNoPEM},
		{name: "cert file holds a key", give: func(c *Config) { c.SIP.TLS.Cert = pki.Key },
			wantPath: "sip.tls.cert", wantErr: ErrInvalid},
		{name: "key file holds a cert", give: func(c *Config) { c.SIP.TLS.Key = pki.Cert },
			wantPath: "sip.tls.key", wantErr: errNoPEM},
		{name: "key of another cert", give: func(c *Config) { c.SIP.TLS.Key = pki.OtherKey },
			wantPath: "sip.tls.key", wantErr: ErrInvalid, wantText: "does not belong"},
		{name: "cert for another name", give: func(c *Config) { c.SIP.TLS.Cert = other.Cert; c.SIP.TLS.Key = other.Key },
			wantPath: "sip.tls.cert", wantErr: ErrConflict, wantText: "sip.fqdn"},
		{name: "client ca not pem", give: func(c *Config) { c.SIP.TLS.ClientCA = pki.Garbage },
			wantPath: "sip.tls.client_ca", wantErr: errNoPEM},
		{name: "client ca missing", give: func(c *Config) { c.SIP.TLS.ClientCA = pki.Missing },
			wantPath: "sip.tls.client_ca", wantErr: fs.ErrNotExist},
		{name: "tls 1.1", give: func(c *Config) { c.SIP.TLS.MinVersion = "1.1" },
			wantPath: "sip.tls.min_version", wantErr: ErrInvalid},
		{name: "unknown suite", give: func(c *Config) {
			c.SIP.TLS.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_FANCY"}
		},
			wantPath: "sip.tls.cipher_suites[1]", wantErr: ErrInvalid, wantText: "unknown"},
		{name: "insecure suite", give: func(c *Config) { c.SIP.TLS.CipherSuites = []string{"TLS_RSA_WITH_RC4_128_SHA"} },
			wantPath: "sip.tls.cipher_suites[0]", wantErr: ErrInvalid, wantText: "insecure"},
		{name: "tls 1.3 suite", give: func(c *Config) { c.SIP.TLS.CipherSuites = []string{"TLS_AES_128_GCM_SHA256"} },
			wantPath: "sip.tls.cipher_suites[0]", wantErr: ErrInvalid, wantText: "TLS 1.3"},
		{name: "duplicate suite", give: func(c *Config) {
			c.SIP.TLS.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
		}, wantPath: "sip.tls.cipher_suites[1]", wantErr: ErrConflict},
		{name: "suites with 1.3 minimum", give: func(c *Config) {
			c.SIP.TLS.MinVersion = "1.3"
			c.SIP.TLS.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
		}, wantPath: "sip.tls.cipher_suites", wantErr: ErrConflict},
	})
}

func TestValidateMedia(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "up to 65535", give: func(c *Config) { c.Media.PortMin, c.Media.PortMax = 10000, 65535 }},
		{name: "sip and admin ports below range", give: func(c *Config) { c.Media.PortMin, c.Media.PortMax = 10000, 10001 }},
		{name: "port_min below 1024", give: func(c *Config) { c.Media.PortMin = 80 },
			wantPath: "media.port_min", wantErr: ErrOutOfRange},
		{name: "no idle pairs", give: func(c *Config) { c.Media.IdlePairs = -1 }},
		{name: "idle pairs bounded", give: func(c *Config) { c.Media.IdlePairs = 9000 }},
		{name: "idle pairs below -1", give: func(c *Config) { c.Media.IdlePairs = -2 },
			wantPath: "media.idle_pairs", wantErr: ErrOutOfRange},
		{name: "idle pairs beyond any range", give: func(c *Config) { c.Media.IdlePairs = 1 << 20 },
			wantPath: "media.idle_pairs", wantErr: ErrOutOfRange},
		{name: "odd port_min", give: func(c *Config) { c.Media.PortMin = 16385 },
			wantPath: "media.port_min", wantErr: ErrInvalid, wantText: "odd"},
		{name: "inverted range", give: func(c *Config) { c.Media.PortMax = c.Media.PortMin },
			wantPath: "media.port_max", wantErr: ErrConflict},
		{name: "port_max too big", give: func(c *Config) { c.Media.PortMax = 65536 },
			wantPath: "media.port_max", wantErr: ErrOutOfRange},
		{name: "workers 0 means GOMAXPROCS", give: func(c *Config) { c.Media.Workers = 0 }},
		{name: "negative workers", give: func(c *Config) { c.Media.Workers = -1 },
			wantPath: "media.workers", wantErr: ErrOutOfRange},
		{name: "latch window zero", give: func(c *Config) { c.Media.LatchWindow = Duration{} },
			wantPath: "media.latch_window", wantErr: ErrOutOfRange},
		{name: "latch window an hour", give: func(c *Config) { c.Media.LatchWindow = Duration{time.Hour} },
			wantPath: "media.latch_window", wantErr: ErrOutOfRange},
		{name: "inactivity timeout off", give: func(c *Config) { c.Media.InactivityTimeout = Duration{} }},
		{name: "inactivity timeout below a second", give: func(c *Config) { c.Media.InactivityTimeout = Duration{500 * time.Millisecond} },
			wantPath: "media.inactivity_timeout", wantErr: ErrOutOfRange},
		{name: "fast path forced", give: func(c *Config) { c.Media.FastPath = "tc" }},
		{name: "fast path off", give: func(c *Config) { c.Media.FastPath = "off" }},
		{name: "fast path unknown", give: func(c *Config) { c.Media.FastPath = "xdp" },
			wantPath: "media.fast_path", wantErr: ErrInvalid, wantText: "off, auto or tc"},
		{name: "send path xdp", give: func(c *Config) { c.Media.SendPath = "xdp" }},
		{name: "send path unknown", give: func(c *Config) { c.Media.SendPath = "dpdk" },
			wantPath: "media.send_path", wantErr: ErrInvalid, wantText: "socket or xdp"},
		{name: "send path empty", give: func(c *Config) { c.Media.SendPath = "" },
			wantPath: "media.send_path", wantErr: ErrInvalid, wantText: "socket or xdp"},
		{name: "no police caps", give: func(c *Config) {
			c.Media.PoliceAudioPPS, c.Media.PoliceAudioKbps, c.Media.PoliceVideoPPS, c.Media.PoliceVideoKbps = 0, 0, 0, 0
		}},
		{name: "police caps at their bounds", give: func(c *Config) {
			c.Media.PoliceAudioPPS, c.Media.PoliceVideoKbps = 1_000_000, 10_000_000
		}},
		{name: "negative audio pps", give: func(c *Config) { c.Media.PoliceAudioPPS = -1 },
			wantPath: "media.police_audio_pps", wantErr: ErrOutOfRange},
		{name: "negative audio kbps", give: func(c *Config) { c.Media.PoliceAudioKbps = -5 },
			wantPath: "media.police_audio_kbps", wantErr: ErrOutOfRange},
		{name: "video pps above a million", give: func(c *Config) { c.Media.PoliceVideoPPS = 1_000_001 },
			wantPath: "media.police_video_pps", wantErr: ErrOutOfRange},
		{name: "video kbps above 10 Gbit/s", give: func(c *Config) { c.Media.PoliceVideoKbps = 10_000_001 },
			wantPath: "media.police_video_kbps", wantErr: ErrOutOfRange},
		{name: "DSCP unmarked and at the top", give: func(c *Config) { c.Media.DSCP, c.Media.DSCPVideo = 0, 63 }},
		{name: "negative DSCP", give: func(c *Config) { c.Media.DSCP = -1 },
			wantPath: "media.dscp", wantErr: ErrOutOfRange},
		{name: "a TOS byte for a DSCP", give: func(c *Config) { c.Media.DSCP = 184 },
			wantPath: "media.dscp", wantErr: ErrOutOfRange},
		{name: "video DSCP past 6 bits", give: func(c *Config) { c.Media.DSCPVideo = 64 },
			wantPath: "media.dscp_video", wantErr: ErrOutOfRange},
	})
}

func TestValidateSBC(t *testing.T) {
	dir := t.TempDir()
	runValidateCases(t, []validateCase{
		{name: "profiles and a CDR file", give: func(c *Config) {
			c.SBC.CDRFile = filepath.Join(dir, "cdr.jsonl")
			c.SBC.Peers = map[string]SBCPeer{"gw": {MediaSecurity: MediaSRTP, Codecs: []string{"PCMA", "telephone-event"}}}
		}},
		{name: "unknown media security", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"my gw": {MediaSecurity: "srtp-please"}}
		}, wantPath: `sbc.peers."my gw".media_security`, wantErr: ErrInvalid},
		{name: "codec name with a separator", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Codecs: []string{"PCMA", "PCMU/8000\r\na=x"}}}
		}, wantPath: "sbc.peers.gw.codecs[1]", wantErr: ErrInvalid},
		{name: "ptimes", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: 20}, "trunk": {Ptime: 60}, "pbx": {Ptime: 10}, "g711": {Ptime: 25, Codecs: []string{"PCMA", "pcmu", "telephone-event"}}}
		}},
		{name: "ptime below 10 ms", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: 5}}
		}, wantPath: "sbc.peers.gw.ptime", wantErr: ErrOutOfRange, wantText: "10..60"},
		{name: "ptime above 60 ms", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: 80}}
		}, wantPath: "sbc.peers.gw.ptime", wantErr: ErrOutOfRange},
		{name: "negative ptime", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: -20}}
		}, wantPath: "sbc.peers.gw.ptime", wantErr: ErrOutOfRange},
		{name: "ptime not whole G.729 frames", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: 25}}
		}, wantPath: "sbc.peers.gw.ptime", wantErr: ErrInvalid, wantText: "multiple of 10"},
		{name: "ptime not whole G.729 frames with G729 allowed", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {Ptime: 15, Codecs: []string{"PCMU", "G729"}}}
		}, wantPath: "sbc.peers.gw.ptime", wantErr: ErrInvalid},
		{name: "keep-alive interval when down too short", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"trunk": {OptionsIntervalDown: Duration{time.Millisecond}}}
		}, wantPath: "sbc.peers.trunk.options_interval_down", wantErr: ErrOutOfRange},
		{name: "negative keep-alive threshold", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"trunk": {OptionsUpAfter: 3, OptionsDownAfter: -1}}
		}, wantPath: "sbc.peers.trunk.options_down_after", wantErr: ErrOutOfRange},
		{name: "negative appliance call rate", give: func(c *Config) { c.SBC.CallsPerSecond = -1 },
			wantPath: "sbc.calls_per_second", wantErr: ErrOutOfRange},
		{name: "call rate not a number", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"trunk": {CallsPerSecond: math.NaN()}}
		}, wantPath: "sbc.peers.trunk.calls_per_second", wantErr: ErrOutOfRange},
		{name: "call rates", give: func(c *Config) {
			c.SBC.CallsPerSecond = 50
			c.SBC.Peers = map[string]SBCPeer{"trunk": {CallsPerSecond: 0.5}}
		}},
		{name: "3xx modes", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"a": {RedirectMode: "rewrite"}, "b": {RedirectMode: "transparent"}, "c": {RedirectMode: "handle_locally"}}
		}},
		{name: "REFER modes", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"a": {ReferMode: "rewrite"}, "b": {ReferMode: "transparent"}, "c": {ReferMode: "handle_locally"}}
		}},
		{name: "unknown REFER mode", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {ReferMode: "redirect"}}
		}, wantPath: "sbc.peers.gw.refer_mode", wantErr: ErrInvalid},
		{name: "unknown 3xx mode", give: func(c *Config) {
			c.SBC.Peers = map[string]SBCPeer{"gw": {RedirectMode: "follow"}}
		}, wantPath: "sbc.peers.gw.redirect_mode", wantErr: ErrInvalid},
		{name: "CDR directory missing", give: func(c *Config) { c.SBC.CDRFile = filepath.Join(dir, "no", "cdr.jsonl") },
			wantPath: "sbc.cdr_file", wantErr: ErrInvalid},
		{name: "negative call limit", give: func(c *Config) { c.SBC.MaxCalls = -1 },
			wantPath: "sbc.max_calls", wantErr: ErrOutOfRange},
		{name: "unknown keep-alive", give: func(c *Config) { c.SBC.KeepAlive = "stun" },
			wantPath: "sbc.keepalive", wantErr: ErrInvalid},
		{name: "ring timeout too short", give: func(c *Config) { c.SBC.RingTimeout = Duration{time.Millisecond} },
			wantPath: "sbc.ring_timeout", wantErr: ErrOutOfRange},
	})
}

func TestValidatePluginHost(t *testing.T) {
	// A plugin directory reached through a symlink, and the real one.
	tmp := t.TempDir()
	real := filepath.Join(tmp, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	sums := func(dir, file string) func(c *Config) {
		return func(c *Config) {
			c.PluginHost.Dir, c.PluginHost.SHA256Sums = dir, file
			p := c.Plugins["umrouter"]
			p.SHA256 = ""
			c.Plugins["umrouter"] = p
		}
	}
	runValidateCases(t, []validateCase{
		{name: "sums file pins", give: sums("bin/plugins", "bin/plugins.sha256")},
		{name: "sums file in a sibling with the same prefix", give: sums("bin/plugins", "bin/plugins-sums/SHA256SUMS")},
		{name: "sums file in the plugin dir", give: sums("bin/plugins", "bin/plugins/SHA256SUMS"),
			wantPath: "plugin_host.sha256sums", wantErr: ErrInvalid, wantText: "inside plugin_host.dir"},
		{name: "sums file in a subdir of the plugin dir", give: sums("/usr/lib/umedge/plugins/", "/usr/lib/umedge/plugins/pins/sums"),
			wantPath: "plugin_host.sha256sums", wantErr: ErrInvalid, wantText: "protects nothing"},
		{name: "sums file in the plugin dir by another spelling", give: sums("bin/plugins", "./bin/x/../plugins/SUMS"),
			wantPath: "plugin_host.sha256sums", wantErr: ErrInvalid},
		{name: "sums file relative, plugin dir absolute", give: func(c *Config) {
			wd, err := os.Getwd()
			if err != nil {
				t.Fatal(err)
			}
			sums(filepath.Join(wd, "bin"), "bin/SHA256SUMS")(c)
		}, wantPath: "plugin_host.sha256sums", wantErr: ErrInvalid},
		{name: "sums file in the plugin dir through a symlink", give: sums(real, filepath.Join(link, "SHA256SUMS")),
			wantPath: "plugin_host.sha256sums", wantErr: ErrInvalid},
		{name: "health probe defaults", give: func(c *Config) {
			c.PluginHost.HealthInterval, c.PluginHost.HealthTimeout = Duration{time.Second}, Duration{time.Second}
		}},
		{name: "health interval zero", give: func(c *Config) { c.PluginHost.HealthInterval = Duration{} },
			wantPath: "plugin_host.health_interval", wantErr: ErrOutOfRange},
		{name: "health interval too long", give: func(c *Config) { c.PluginHost.HealthInterval = Duration{2 * time.Minute} },
			wantPath: "plugin_host.health_interval", wantErr: ErrOutOfRange},
		{name: "health timeout zero", give: func(c *Config) { c.PluginHost.HealthTimeout = Duration{} },
			wantPath: "plugin_host.health_timeout", wantErr: ErrOutOfRange},
		{name: "health timeout above the interval", give: func(c *Config) {
			c.PluginHost.HealthInterval, c.PluginHost.HealthTimeout = Duration{time.Second}, Duration{2 * time.Second}
		}, wantPath: "plugin_host.health_timeout", wantErr: ErrConflict, wantText: "plugin_host.health_interval"},
		{name: "drain timeout zero", give: func(c *Config) { c.PluginHost.DrainTimeout = Duration{} },
			wantPath: "plugin_host.drain_timeout", wantErr: ErrOutOfRange},
		{name: "drain timeout too long", give: func(c *Config) { c.PluginHost.DrainTimeout = Duration{time.Hour} },
			wantPath: "plugin_host.drain_timeout", wantErr: ErrOutOfRange},
		{name: "no dir", give: func(c *Config) { c.PluginHost.Dir = "" },
			wantPath: "plugin_host.dir", wantErr: ErrRequired},
		{name: "call timeout zero", give: func(c *Config) { c.PluginHost.CallTimeout = Duration{} },
			wantPath: "plugin_host.call_timeout", wantErr: ErrOutOfRange},
		{name: "call timeout too long", give: func(c *Config) { c.PluginHost.CallTimeout = Duration{2 * time.Minute} },
			wantPath: "plugin_host.call_timeout", wantErr: ErrOutOfRange},
		{name: "start timeout too short", give: func(c *Config) { c.PluginHost.StartTimeout = Duration{time.Millisecond} },
			wantPath: "plugin_host.start_timeout", wantErr: ErrOutOfRange},
		{name: "backoff min zero", give: func(c *Config) { c.PluginHost.RestartBackoffMin = Duration{} },
			wantPath: "plugin_host.restart_backoff_min", wantErr: ErrOutOfRange},
		{name: "backoff inverted", give: func(c *Config) { c.PluginHost.RestartBackoffMax = Duration{10 * time.Millisecond} },
			wantPath: "plugin_host.restart_backoff_max", wantErr: ErrConflict},
	})
}

func TestValidatePlugins(t *testing.T) {
	pin := strings.Repeat("0f", 32)
	add := func(name string, p Plugin) func(c *Config) {
		return func(c *Config) { c.Plugins[name] = p }
	}
	runValidateCases(t, []validateCase{
		{name: "no plugins", give: func(c *Config) { c.Plugins = nil }},
		{name: "router plus workers", give: func(c *Config) {
			c.Plugins["worker-a"] = Plugin{Kind: base.KindWorker, Binary: "umedge-plugin-umworker", SHA256: pin}
			c.Plugins["worker_b"] = Plugin{Kind: base.KindWorker, Binary: "umedge-plugin-umworker", SHA256: strings.ToUpper(pin)}
			c.Plugins["lync"] = Plugin{Kind: base.KindIntegration, Binary: "umedge-plugin-lync", SHA256: pin}
		}},
		{name: "bad instance name", give: add("Lync", Plugin{Kind: base.KindIntegration, Binary: "x", SHA256: pin}),
			wantPath: "plugins.Lync", wantErr: ErrInvalid},
		{name: "name that needs quoting", give: add("a.b", Plugin{Kind: base.KindIntegration, Binary: "x", SHA256: pin}),
			wantPath: `plugins."a.b"`, wantErr: ErrInvalid},
		{name: "no kind", give: add("w", Plugin{Binary: "x", SHA256: pin}),
			wantPath: "plugins.w.kind", wantErr: ErrRequired},
		{name: "unknown kind", give: add("w", Plugin{Kind: "media", Binary: "x", SHA256: pin}),
			wantPath: "plugins.w.kind", wantErr: ErrInvalid},
		{name: "second router", give: add("zrouter", Plugin{Kind: base.KindRouter, Binary: "x", SHA256: pin}),
			wantPath: "plugins.zrouter.kind", wantErr: ErrConflict, wantText: "plugins.umrouter"},
		{name: "no binary", give: add("w", Plugin{Kind: base.KindWorker, SHA256: pin}),
			wantPath: "plugins.w.binary", wantErr: ErrRequired},
		{name: "binary with a path", give: add("w", Plugin{Kind: base.KindWorker, Binary: "../../bin/sh", SHA256: pin}),
			wantPath: "plugins.w.binary", wantErr: ErrInvalid},
		{name: "binary with a backslash", give: add("w", Plugin{Kind: base.KindWorker, Binary: `a\b`, SHA256: pin}),
			wantPath: "plugins.w.binary", wantErr: ErrInvalid},
		{name: "binary dot dot", give: add("w", Plugin{Kind: base.KindWorker, Binary: "..", SHA256: pin}),
			wantPath: "plugins.w.binary", wantErr: ErrInvalid},
		{name: "short sha256", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: "abcd"}),
			wantPath: "plugins.w.sha256", wantErr: ErrInvalid},
		{name: "non-hex sha256", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: strings.Repeat("zz", 32)}),
			wantPath: "plugins.w.sha256", wantErr: ErrInvalid},
		{name: "no pin at all", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x"}),
			wantPath: "plugins.w.sha256", wantErr: ErrRequired},
		{name: "worker instances a and b", give: add("umworker",
			Plugin{Kind: base.KindWorker, Binary: "x", SHA256: pin, Instances: []string{"a", "b"}})},
		{name: "empty instance list", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: pin, Instances: []string{}}),
			wantPath: "plugins.w.instances", wantErr: ErrInvalid},
		{name: "instance name with a slash", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: pin, Instances: []string{"a", "b/c"}}),
			wantPath: "plugins.w.instances[1]", wantErr: ErrInvalid},
		{name: "empty instance name", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: pin, Instances: []string{""}}),
			wantPath: "plugins.w.instances[0]", wantErr: ErrInvalid},
		{name: "instance twice", give: add("w", Plugin{Kind: base.KindWorker, Binary: "x", SHA256: pin, Instances: []string{"a", "b", "a"}}),
			wantPath: "plugins.w.instances[2]", wantErr: ErrConflict, wantText: "plugins.w.instances[0]"},
		{name: "router with instances", give: func(c *Config) {
			p := c.Plugins["umrouter"]
			p.Instances = []string{"a", "b"}
			c.Plugins["umrouter"] = p
		}, wantPath: "plugins.umrouter.instances", wantErr: ErrInvalid, wantText: "one process"},
	})
}

func TestValidateConflicts(t *testing.T) {
	runValidateCases(t, []validateCase{
		{name: "same port in tcp mode is fine", give: func(c *Config) { c.SIP.Mode = ModeTCP; c.SIP.TLSPort = c.SIP.TCPPort }},
		{name: "same port in tls mode is fine", give: func(c *Config) { c.SIP.Mode = ModeTLS; c.SIP.TCPPort = c.SIP.TLSPort }},
		{name: "admin on sip port elsewhere", give: func(c *Config) {
			c.SIP.Listen = []string{"127.0.0.2"}
			c.Admin.Listen = "127.0.0.1:5060"
		}},
		{name: "tls port inside media range unused in tcp mode", give: func(c *Config) { c.SIP.Mode = ModeTCP; c.SIP.TLSPort = 20000 }},
		{name: "tcp and tls port equal in dual", give: func(c *Config) { c.SIP.TLSPort = 5060 },
			wantPath: "sip.tls_port", wantErr: ErrConflict, wantText: "sip.tcp_port"},
		{name: "admin on sip port", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:5061" },
			wantPath: "admin.listen", wantErr: ErrConflict, wantText: "sip.tls_port"},
		{name: "admin on localhost sip port", give: func(c *Config) { c.Admin.Listen = "localhost:5060" },
			wantPath: "admin.listen", wantErr: ErrConflict},
		{name: "admin wildcard on sip port", give: func(c *Config) {
			c.Admin.Listen = "0.0.0.0:5060"
			c.Admin.AllowRemote = true
		}, wantPath: "admin.listen", wantErr: ErrConflict},
		{name: "admin v4 vs sip v6 wildcard", give: func(c *Config) {
			c.SIP.Listen = []string{"::"}
			c.Admin.Listen = "127.0.0.1:5061"
		}, wantPath: "admin.listen", wantErr: ErrConflict},
		{name: "sip port inside media range", give: func(c *Config) { c.SIP.TCPPort = 20000 },
			wantPath: "sip.tcp_port", wantErr: ErrConflict, wantText: "media range"},
		{name: "admin port inside media range", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:16384" },
			wantPath: "admin.listen", wantErr: ErrConflict, wantText: "media range"},
	})
}

func TestValidateAllProblems(t *testing.T) {
	c := Default()
	c.Log.Level = "loud"
	c.SIP.Listen = []string{"nowhere"}
	c.Media.PortMin = 3
	c.PluginHost.Dir = ""
	c.Plugins["r"] = Plugin{Kind: "x"}

	got := problems(c.Validate())

	want := map[string]bool{
		"log.level": true, "sip.listen[0]": true, "sip.tls.cert": true, "sip.tls.key": true,
		"sip.tls.client_ca": true, "media.port_min": true, "plugin_host.dir": true,
		"plugins.r.kind": true, "plugins.r.binary": true, "plugins.r.sha256": true,
	}
	for _, fe := range got {
		if !want[fe.Path] {
			t.Errorf("unexpected problem %v", fe)
		}
		delete(want, fe.Path)
	}
	for p := range want {
		t.Errorf("missing problem at %s", p)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		give *FieldError
		want string
	}{
		{name: "everything", give: &FieldError{File: "a.toml", Line: 3, Path: "sip.mode", Err: ErrInvalid}, want: "a.toml:3: sip.mode: invalid"},
		{name: "no line", give: &FieldError{File: "a.toml", Path: "sip.mode", Err: ErrInvalid}, want: "a.toml: sip.mode: invalid"},
		{name: "no file", give: &FieldError{Path: "sip.mode", Err: ErrRequired}, want: "sip.mode: required"},
		{name: "line without file", give: &FieldError{Line: 7, Path: "sip.mode", Err: ErrRequired}, want: "line 7: sip.mode: required"},
		{name: "no path", give: &FieldError{File: "a.toml", Line: 1, Err: ErrSyntax}, want: "a.toml:1: syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.give, tt.give.Err) {
				t.Errorf("errors.Is(fe, fe.Err) = false")
			}
		})
	}
}

func TestValidateCapture(t *testing.T) {
	good := writeToken(t, "hep-secret\n", 0o600)
	public := writeToken(t, "hep-secret", 0o644)
	spaced := writeToken(t, "hep secret", 0o600)
	empty := writeToken(t, "\n", 0o600)
	runValidateCases(t, []validateCase{
		{name: "off by default", give: func(*Config) {}},
		{name: "udp collector by address", give: func(c *Config) { c.Capture.HEP = "192.0.2.50:9060" }},
		{name: "tcp collector by name with a password", give: func(c *Config) {
			c.Capture.HEP, c.Capture.HEPTransport, c.Capture.HEPPasswordFile = "homer.example.net:9061", "tcp", good
		}},
		{name: "ipv6 collector", give: func(c *Config) { c.Capture.HEP = "[2001:db8::50]:9060" }},
		{name: "no port", give: func(c *Config) { c.Capture.HEP = "192.0.2.50" },
			wantPath: "capture.hep", wantErr: ErrInvalid, wantText: "host:port"},
		{name: "port zero", give: func(c *Config) { c.Capture.HEP = "192.0.2.50:0" },
			wantPath: "capture.hep", wantErr: ErrOutOfRange},
		{name: "unspecified address", give: func(c *Config) { c.Capture.HEP = "[::]:9060" },
			wantPath: "capture.hep", wantErr: ErrInvalid},
		{name: "bad host name", give: func(c *Config) { c.Capture.HEP = "homer_.example..net:9060" },
			wantPath: "capture.hep", wantErr: ErrInvalid},
		{name: "transport", give: func(c *Config) { c.Capture.HEPTransport = "tls" },
			wantPath: "capture.hep_transport", wantErr: ErrInvalid},
		{name: "agent id too large", give: func(c *Config) { c.Capture.HEPID = 1 << 32 },
			wantPath: "capture.hep_id", wantErr: ErrOutOfRange},
		{name: "queue too small", give: func(c *Config) { c.Capture.HEPQueue = 0 },
			wantPath: "capture.hep_queue", wantErr: ErrOutOfRange},
		{name: "world-readable password", give: func(c *Config) { c.Capture.HEPPasswordFile = public },
			wantPath: "capture.hep_password_file", wantErr: errTokenReadable},
		{name: "password with a space", give: func(c *Config) { c.Capture.HEPPasswordFile = spaced },
			wantPath: "capture.hep_password_file", wantErr: errTokenChars},
		{name: "empty password", give: func(c *Config) { c.Capture.HEPPasswordFile = empty },
			wantPath: "capture.hep_password_file", wantErr: errHEPPasswordEmpty},
	})
}

func TestHEPPassword(t *testing.T) {
	f := writeToken(t, "  s3cret\n", 0o600)
	pw, err := Capture{HEPPasswordFile: f}.HEPPassword()
	if err != nil || string(pw) != "s3cret" {
		t.Errorf("HEPPassword = %q, %v", pw, err)
	}
	if pw, err := (Capture{}).HEPPassword(); pw != nil || err != nil {
		t.Errorf("no file: %q, %v", pw, err)
	}
}

func TestValidateNetworkDNS(t *testing.T) {
	many := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = "192.0.2.1"
		}
		return s
	}
	runValidateCases(t, []validateCase{
		{name: "eight resolvers", give: func(c *Config) { c.Network.DNS = many(maxResolvers) }},
		{name: "a flood of resolvers", give: func(c *Config) { c.Network.DNS = many(100_001) },
			wantPath: "network.dns", wantErr: ErrInvalid, wantText: "100001 resolvers"},
		{name: "a zone", give: func(c *Config) { c.Network.DNS = []string{"fe80::1%eth0"} },
			wantPath: "network.dns[0]", wantErr: ErrInvalid},
	})
}
