//go:build integration

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/netnstest"
	"github.com/umedge/umedge/core/internal/sipptest"
	"github.com/umedge/umedge/core/internal/testutil"
)

// The integration tests run the real edged binary with the real umrouter
// plugin on loopback and drive it with SIPp (Debian's sip-tester).

var (
	buildOnce           sync.Once
	edgedBin, pluginDir string
	errBuild            error
)

// binaries builds edged and every plugin once per test run, the way
// `make build plugins` does, and pins the plugins in plugins.sha256 beside
// the plugin directory.
func binaries(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "umedge-it-")
		if err != nil {
			errBuild = err
			return
		}
		edgedBin = filepath.Join(dir, "edged")
		pluginDir = filepath.Join(dir, "plugins")
		root := repoRoot()
		steps := [][]string{
			{"go", "build", "-o", edgedBin, "./core/cmd/edged"},
			{"go", "build", "-o", filepath.Join(pluginDir, "umedge-plugin-umrouter"), "./plugins/umrouter"},
		}
		for _, s := range steps {
			cmd := exec.Command(s[0], s[1:]...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				errBuild = fmt.Errorf("%v: %w\n%s", s, err, out)
				return
			}
		}
		cmd := exec.Command("sh", "-c", "sha256sum umedge-plugin-* > ../plugins.sha256")
		cmd.Dir = pluginDir
		if out, err := cmd.CombinedOutput(); err != nil {
			errBuild = fmt.Errorf("sha256sum: %w\n%s", err, out)
		}
	})
	if errBuild != nil {
		t.Fatal(errBuild)
	}
	return edgedBin, pluginDir
}

func repoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// freePort is a port free for UDP and TCP whose port+1 (the TLS
// listener's) is free for TCP too.
func freePort(t *testing.T) int {
	t.Helper()
	return testutil.FreeUDPTCPPort(t, 1)
}

// lab is the test site: three gateways (enabled, disabled, draining), a
// dial plan whose two mailboxes live in different pools (so the Contact
// shows which mailbox was picked), and a plan whose only back end is down.
type lab struct {
	SIPPort, TLSPort, AdminPort, DeadPort int
	PluginDir                             string
	PKI                                   devpki.Files
	Mailbox1001Pool                       string
	LabStatus                             string
	Extra                                 string // appended to [sip]
	Raw                                   string // the whole config instead of the lab's, when set
}

const labConfig = `
[log]
level = "debug"
[admin]
listen = "127.0.0.1:{{.AdminPort}}"
[sip]
fqdn = "umedge.local"
listen = ["127.0.0.1", "::1"]
mode = "dual"
udp = true
tcp_port = {{.SIPPort}}
tls_port = {{.TLSPort}}
retry_after = "30s"
{{.Extra}}
[sip.tls]
cert = "{{.PKI.ServerCert}}"
key = "{{.PKI.ServerKey}}"
client_ca = "{{.PKI.CA}}"
[plugin_host]
dir = "{{.PluginDir}}"
sha256sums = "{{.PluginDir}}.sha256"
restart_backoff_min = "50ms"
[plugins.umrouter]
kind = "router"
binary = "umedge-plugin-umrouter"
[plugins.umrouter.settings.gateways.lab]
addresses = ["127.0.0.1", "::1"]
fqdn = "gateway.umedge.local"
status = "{{.LabStatus}}"
# The lab gateway is edged itself: its OPTIONS keep-alives answer 200.
options_interval = "100ms"
options_target = "127.0.0.1:{{.SIPPort}}"
options_transport = "udp"
[plugins.umrouter.settings.gateways.off]
addresses = ["127.0.0.3"]
status = "Disabled"
[plugins.umrouter.settings.gateways.drain]
addresses = ["127.0.0.4"]
status = "NoNewCalls"
[plugins.umrouter.settings.hunt_groups.lab-dead]
gateway = "lab"
pilot = "7000"
dial_plan = "dead"
[plugins.umrouter.settings.hunt_groups.lab-all]
gateway = "lab"
dial_plan = "lab"
[plugins.umrouter.settings.hunt_groups.off-all]
gateway = "off"
dial_plan = "lab"
[plugins.umrouter.settings.hunt_groups.drain-all]
gateway = "drain"
dial_plan = "lab"
[plugins.umrouter.settings.dial_plans.lab]
extension_digits = 4
access_numbers = ["5000"]
pool = "a"
[plugins.umrouter.settings.dial_plans.dead]
extension_digits = 4
access_numbers = ["7000"]
pool = "down"
[plugins.umrouter.settings.mailboxes.1001]
extension = "1001"
dial_plan = "lab"
pool = "{{.Mailbox1001Pool}}"
[plugins.umrouter.settings.mailboxes.1002]
extension = "1002"
dial_plan = "lab"
pool = "b"
[plugins.umrouter.settings.pools.a]
[[plugins.umrouter.settings.pools.a.backends]]
name = "um-a"
host = "um-a.test"
[plugins.umrouter.settings.pools.b]
[[plugins.umrouter.settings.pools.b.backends]]
name = "um-b"
host = "um-b.test"
[plugins.umrouter.settings.pools.down]
options_interval = "100ms"
[[plugins.umrouter.settings.pools.down.backends]]
name = "gone"
host = "127.0.0.1"
tcp_port = {{.DeadPort}}
`

// edged is a running edged process.
type edged struct {
	t      *testing.T
	cmd    *exec.Cmd
	cfg    string
	lab    lab
	log    testutil.LockedBuffer
	exited chan struct{}
	client *http.Client // of the admin API: nil = http.DefaultClient
}

func (e *edged) logText() string { return e.log.String() }

func newLab(t *testing.T) lab {
	t.Helper()
	_, plugins := binaries(t)
	pki, err := devpki.Write(t.TempDir(), "umedge.local", "gateway.umedge.local", "stranger.umedge.local")
	if err != nil {
		t.Fatal(err)
	}
	sip := freePort(t)
	return lab{SIPPort: sip, TLSPort: sip + 1, AdminPort: freePort(t), DeadPort: freePort(t),
		PluginDir: plugins, PKI: pki, Mailbox1001Pool: "a", LabStatus: "Enabled"}
}

func (l lab) render(t *testing.T) string {
	t.Helper()
	if l.Raw != "" {
		return l.Raw
	}
	var b strings.Builder
	if err := template.Must(template.New("lab").Parse(labConfig)).Execute(&b, l); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// startEdged writes l's config and runs edged on it until the test ends.
func startEdged(t *testing.T, l lab) *edged {
	t.Helper()
	return startEdgedIn(t, l, "")
}

// startEdgedIn is startEdged in network namespace ns ("" = the test's).
func startEdgedIn(t *testing.T, l lab, ns netnstest.NS) *edged {
	t.Helper()
	bin, _ := binaries(t)
	e := &edged{t: t, cfg: filepath.Join(t.TempDir(), "umedge.toml"), lab: l, exited: make(chan struct{})}
	e.writeConfig(l.render(t))
	e.cmd = exec.Command(bin, "-config", e.cfg)
	if ns != "" {
		e.cmd = ns.Command(bin, "-config", e.cfg)
		e.client = nsClient(string(ns)) // sbc_fastpath_integration_test.go
	}
	e.cmd.Stdout, e.cmd.Stderr = &e.log, &e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(5 * time.Second):
			_ = e.cmd.Process.Kill()
			t.Error("edged did not stop within 5 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("edged log:\n%s", tail(e.logText(), 60))
		}
	})
	e.waitHealthy()
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *edged) writeConfig(text string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfg, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *edged) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", e.lab.AdminPort, path)
}

// get fetches path from the admin API.
func (e *edged) get(path string) (*http.Response, error) {
	c := e.client
	if c == nil {
		c = http.DefaultClient
	}
	return c.Get(e.url(path))
}

// healthz returns /healthz's status code and body.
func (e *edged) healthz() (int, string) {
	resp, err := e.get("/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (e *edged) waitHealthy() {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-e.exited:
			e.t.Fatalf("edged exited:\n%s", e.logText())
		default:
		}
		if resp, err := e.get("/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("edged not healthy within 15 s:\n%s", e.logText())
}

type pluginStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Live     bool   `json:"live"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
}

type status struct {
	Listeners []string       `json:"listeners"`
	Plugins   []pluginStatus `json:"plugins"`
	Gateways  []struct {
		Name  string `json:"name"`
		Probe *struct {
			Up       bool `json:"up"`
			LastCode int  `json:"last_code"`
		} `json:"probe"`
	} `json:"gateways"`
	Pools []struct {
		Name     string `json:"name"`
		Backends []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
		} `json:"backends"`
	} `json:"pools"`
}

func (e *edged) status() status {
	e.t.Helper()
	resp, err := e.get("/status")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *edged) plugin(name string) pluginStatus {
	for _, p := range e.status().Plugins {
		if p.Name == name {
			return p
		}
	}
	e.t.Fatalf("no plugin %s in /status", name)
	return pluginStatus{}
}

func (e *edged) metric(name string) float64 {
	e.t.Helper()
	resp, err := e.get("/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	e.t.Fatalf("metric %s not found", name)
	return 0
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *edged) target(tp string) string {
	if tp == "tls" {
		return fmt.Sprintf("127.0.0.1:%d", e.lab.TLSPort)
	}
	return fmt.Sprintf("127.0.0.1:%d", e.lab.SIPPort)
}

// sipp runs r against e and fails the test unless every call succeeded.
func (e *edged) sipp(t *testing.T, r sipptest.Run) *sipptest.Result {
	t.Helper()
	if r.Target == "" {
		r.Target = e.target(r.Transport)
	}
	if r.Transport == "tls" && r.TLSCert == "" {
		gw := e.lab.PKI.Clients["gateway.umedge.local"]
		r.TLSCert, r.TLSKey = gw.Cert, gw.Key
	}
	res, err := r.Exec(context.Background(), t)
	if err != nil {
		t.Fatalf("sipp: %v", err)
	}
	if res.Failed != 0 || res.Successful != max(r.Calls, 1) {
		t.Fatalf("sipp %s %s: %d successful, %d failed of %d\n%s\n%s", r.Scenario, r.Transport,
			res.Successful, res.Failed, max(r.Calls, 1), res.Errors, res.Stderr)
	}
	return res
}

func contactRE(user, host string, port int, tp string) string {
	return "^<sip:" + regexp.QuoteMeta(user) + "@" + regexp.QuoteMeta(host) + ":" + strconv.Itoa(port) + ";transport=" + tp + ">$"
}

func TestIntegrationCallRouter(t *testing.T) {
	sipptest.Require(t)
	e := startEdged(t, newLab(t))

	t.Run("302 over every transport", func(t *testing.T) {
		for _, tt := range []struct {
			transport string
			port      int
			param     string
		}{
			{"udp", 5062, "tcp"}, // UDP moves to TCP: the UM side is stream-only (R-PORT-1)
			{"tcp", 5062, "tcp"},
			{"tls", 5063, "tls"},
		} {
			t.Run(tt.transport, func(t *testing.T) {
				e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Transport: tt.transport, Service: "1001",
					ContactPattern: contactRE("1001", "um-a.test", tt.port, tt.param), Calls: 20, Rate: 50})
				e.sipp(t, sipptest.Run{Scenario: sipptest.UACRetrans, Transport: tt.transport, Service: "1001",
					ContactPattern: contactRE("1001", "um-a.test", tt.port, tt.param), Calls: 5, Rate: 20})
			})
		}
	})

	t.Run("302 over IPv6", func(t *testing.T) {
		for _, tp := range []string{"udp", "tcp"} {
			e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Transport: tp, Target: fmt.Sprintf("[::1]:%d", e.lab.SIPPort),
				Service: "1002", ContactPattern: contactRE("1002", "um-b.test", 5062, "tcp"), Calls: 5, Rate: 20})
		}
	})

	t.Run("OPTIONS", func(t *testing.T) {
		for _, tp := range []string{"udp", "tcp", "tls"} {
			e.sipp(t, sipptest.Run{Scenario: sipptest.UACOptions, Transport: tp})
		}
		// edged's own keep-alives to the lab gateway (R-HLTH-1) reach it.
		waitFor(t, 5*time.Second, "the lab gateway's OPTIONS probe to answer 200", func() bool {
			for _, g := range e.status().Gateways {
				if g.Name == "lab" && g.Probe != nil {
					return g.Probe.Up && g.Probe.LastCode == 200
				}
			}
			return false
		})
	})

	t.Run("called party", func(t *testing.T) {
		tests := []struct {
			name    string
			service string
			headers []string
			want    string // Contact pattern
		}{
			{"plain To picks 1001 in pool a", "1001", nil, contactRE("1001", "um-a.test", 5062, "tcp")},
			{"plain To picks 1002 in pool b", "1002", nil, contactRE("1002", "um-b.test", 5062, "tcp")},
			{"pilot reaches subscriber access", "5000", nil, contactRE("5000", "um-a.test", 5062, "tcp")},
			{"Diversion picks 1002", "5000", []string{"Diversion: <sip:1002@pbx.test>;reason=no-answer"},
				contactRE("5000", "um-b.test", 5062, "tcp")},
			{"History-Info picks 1002", "5000", []string{"History-Info: <sip:1002@pbx.test>;index=1, <sip:5000@um.test;cause=408>;index=1.1"},
				contactRE("5000", "um-b.test", 5062, "tcp")},
			{"Diversion wins over History-Info", "5000", []string{
				"Diversion: <sip:1001@pbx.test>;reason=user-busy",
				"History-Info: <sip:1002@pbx.test>;index=1, <sip:5000@um.test;cause=486>;index=1.1"},
				contactRE("5000", "um-a.test", 5062, "tcp")},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: tt.service, Headers: tt.headers, ContactPattern: tt.want})
			})
		}
	})

	t.Run("rejections", func(t *testing.T) {
		waitFor(t, 5*time.Second, "the dead back end to be marked down", func() bool {
			for _, p := range e.status().Pools {
				if p.Name == "down" {
					return len(p.Backends) == 1 && !p.Backends[0].Healthy
				}
			}
			return false
		})
		stranger := e.lab.PKI.Clients["stranger.umedge.local"]
		tests := []struct {
			name       string
			run        sipptest.Run
			code       int
			retryAfter bool
		}{
			{"unknown source", sipptest.Run{LocalIP: "127.0.0.2", Service: "1001"}, 403, false},
			{"disabled gateway", sipptest.Run{LocalIP: "127.0.0.3", Service: "1001"}, 403, false},
			{"draining gateway", sipptest.Run{LocalIP: "127.0.0.4", Service: "1001"}, 503, true},
			{"unknown number", sipptest.Run{Service: "9999"}, 404, false},
			{"malformed number", sipptest.Run{Service: "12345"}, 404, false},
			{"no healthy back end", sipptest.Run{Service: "7000"}, 503, true},
			{"TLS certificate of no gateway", sipptest.Run{Transport: "tls", Service: "1001",
				TLSCert: stranger.Cert, TLSKey: stranger.Key}, 403, false},
			{"Diversion with an unbalanced quote", sipptest.Run{Service: "5000",
				Headers: []string{`Diversion: "Bob <sip:1002@pbx.test>;reason=no-answer`}}, 400, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.run
				r.Scenario, r.Codes, r.RetryAfter = sipptest.UACCode, []int{tt.code}, tt.retryAfter
				e.sipp(t, r)
			})
		}
		if up := e.metric(`umedge_health_up{target="backend/down/gone"}`); up != 0 {
			t.Errorf("umedge_health_up of the dead back end = %v, want 0", up)
		}
		if up := e.metric(`umedge_health_up{target="gateway/lab"}`); up != 1 {
			t.Errorf("umedge_health_up of the lab gateway = %v, want 1", up)
		}
		rejected := e.metric(`umedge_router_rejections_total{reason="unknown-peer"}`)
		if rejected < 1 {
			t.Errorf("umedge_router_rejections_total{reason=\"unknown-peer\"} = %v, want >= 1", rejected)
		}
		if !strings.Contains(e.logText(), `msg="call rejected"`) || !strings.Contains(e.logText(), "reason=unknown-peer") {
			t.Error("no structured rejection event in the log")
		}
	})

	t.Run("TLS from another CA is refused in the handshake", func(t *testing.T) {
		other, err := devpki.Write(t.TempDir(), "other.test", "gateway.umedge.local")
		if err != nil {
			t.Fatal(err)
		}
		gw := other.Clients["gateway.umedge.local"]
		cert, err := tls.LoadX509KeyPair(gw.Cert, gw.Key)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		caPEM, _ := os.ReadFile(e.lab.PKI.CA)
		roots.AppendCertsFromPEM(caPEM)
		c, err := tls.Dial("tcp", e.target("tls"), &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "umedge.local"})
		if err == nil {
			// TLS 1.3 reports the client certificate's rejection on the first read.
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("handshake with a foreign client certificate: err = %v, want a certificate error", err)
		}
		// And no TLS below 1.2 (R-SEC-6).
		_, err = tls.Dial("tcp", e.target("tls"), &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true})
		if err == nil {
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})
}

// TestIntegrationReload: a bad file is refused and the old config keeps
// running; a good one changes dial plans, gateways and listeners live.
func TestIntegrationReload(t *testing.T) {
	l := newLab(t)
	e := startEdged(t, l)
	reload := func() {
		t.Helper()
		resp, err := http.Post(e.url("/reload"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("reload: %d %s", resp.StatusCode, body)
	}

	// A bad file: core problems and a plugin problem, all refused.
	bad := strings.Replace(l.render(t), `fqdn = "umedge.local"`, "fqdn = \"umedge.local\"\nbogus_key = 1", 1)
	bad = strings.Replace(bad, `status = "Enabled"`, `status = "Sometimes"`, 1)
	e.writeConfig(bad)
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reload to be refused", func() bool {
		return strings.Contains(e.logText(), "reload refused")
	})
	if !strings.Contains(e.logText(), "sip.bogus_key") {
		t.Errorf("refusal does not name sip.bogus_key:\n%s", tail(e.logText(), 10))
	}
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-a.test", 5062, "tcp")})

	// A plugin-only problem is refused too, with its line.
	e.writeConfig(strings.Replace(l.render(t), `status = "Enabled"`, `status = "Sometimes"`, 1))
	resp, err := http.Post(e.url("/reload"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !regexp.MustCompile(`:\d+: plugins\.umrouter\.settings\.gateways\.lab\.status`).Match(body) {
		t.Errorf("reload with a bad plugin setting = %d %q, want 422 naming the key and line", resp.StatusCode, body)
	}
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-a.test", 5062, "tcp")})

	// A good file: mailbox 1001 moves to pool b, a new port opens, the old closes.
	l2 := l
	l2.Mailbox1001Pool = "b"
	l2.SIPPort = freePort(t)
	l2.TLSPort = l2.SIPPort + 1
	e.writeConfig(l2.render(t))
	reload()
	e.lab = l2
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-b.test", 5062, "tcp")})
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Transport: "tls", Service: "1001", ContactPattern: contactRE("1001", "um-b.test", 5063, "tls")})
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.SIPPort), time.Second); err == nil {
		c.Close()
		t.Errorf("old SIP port %d still listening after the reload", l.SIPPort)
	}

	// New certificates from a new CA take effect on reload (um-spec R-SEC-4):
	// the old gateway certificate is refused, the new one is served.
	oldGW := l2.PKI.Clients["gateway.umedge.local"]
	pki, err := devpki.Write(t.TempDir(), "umedge.local", "gateway.umedge.local", "stranger.umedge.local")
	if err != nil {
		t.Fatal(err)
	}
	l2.PKI = pki
	e.writeConfig(l2.render(t))
	reload()
	e.lab = l2
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Transport: "tls", Service: "1001", ContactPattern: contactRE("1001", "um-b.test", 5063, "tls")})
	res, err := sipptest.Run{Scenario: sipptest.UAC302, Transport: "tls", Target: e.target("tls"), Service: "1001",
		TLSCert: oldGW.Cert, TLSKey: oldGW.Key, RecvTimeout: time.Second}.Exec(context.Background(), t)
	// The refused handshake closes SIPp's connection: SIPp fails the call
	// or, as it does for a lost TCP connection, gives up with an error.
	switch {
	case err != nil && !errors.Is(err, sipptest.ErrSIPp):
		t.Fatalf("sipp with the old certificate: %v", err)
	case err == nil && res.Successful != 0:
		t.Errorf("a certificate of the replaced CA still got %d calls through", res.Successful)
	}

	// The gateway is disabled without a restart.
	l3 := l2
	l3.LabStatus = "Disabled"
	e.writeConfig(l3.render(t))
	reload()
	e.sipp(t, sipptest.Run{Scenario: sipptest.UACCode, Service: "1001", Codes: []int{403}})
}

// TestIntegrationConfigCheck: `edged config check` lists every problem of a
// bad file with its key path and line, the plugin's own ones included.
func TestIntegrationConfigCheck(t *testing.T) {
	bin, _ := binaries(t)
	l := newLab(t)
	text := l.render(t)
	text = strings.Replace(text, "tcp_port = ", "tcp_port = 99999 # ", 1)
	text = strings.Replace(text, "[sip.tls]", "unknown_thing = true\n[sip.tls]", 1)
	text = strings.Replace(text, `status = "Enabled"`, `status = "Sometimes"`, 1)
	file := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "check", file).CombinedOutput()
	if err == nil {
		t.Fatalf("config check passed a bad file:\n%s", out)
	}
	for _, want := range []string{`:\d+: sip\.tcp_port: `, `:\d+: sip\.unknown_thing: unknown key`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}
	// The core problems stop the check before the plugin is asked; with
	// them fixed, the plugin's problem is reported with its line.
	text = l.render(t)
	text = strings.Replace(text, `status = "Enabled"`, `status = "Sometimes"`, 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "config", "check", file).CombinedOutput()
	if err == nil || !regexp.MustCompile(`:\d+: plugins\.umrouter\.settings\.gateways\.lab\.status: `).Match(out) {
		t.Errorf("config check of a bad plugin setting: err=%v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "config", "check", filepath.Join(repoRoot(), "configs", "edge.toml")).CombinedOutput(); err == nil {
		t.Errorf("edge.toml names appliance TLS files that do not exist here, yet config check passed:\n%s", out)
	}
}

// TestIntegrationTorture sends the RFC 4475 corpus to the running process
// over UDP and TCP, repeatedly: it must stay up and not leak goroutines.
func TestIntegrationTorture(t *testing.T) {
	e := startEdged(t, newLab(t))
	files, err := filepath.Glob(filepath.Join(repoRoot(), "core", "internal", "sipfront", "testdata", "rfc4475", "*.dat"))
	if err != nil || len(files) < 40 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	baseline := e.metric("go_goroutines")
	for round := range 5 {
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if u, err := net.Dial("udp", e.target("udp")); err == nil {
				_, _ = u.Write(data)
				u.Close()
			}
			c, err := net.Dial("tcp", e.target("tcp"))
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			_, _ = c.Write(data)
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Read(make([]byte, 4096))
			c.Close()
		}
	}
	e.waitHealthy()
	waitFor(t, 5*time.Second, "goroutines to settle", func() bool {
		return e.metric("go_goroutines") <= baseline+3
	})
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Service: "1001", ContactPattern: contactRE("1001", "um-a.test", 5062, "tcp")})
}
