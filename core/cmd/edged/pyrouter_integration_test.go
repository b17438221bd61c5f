//go:build integration

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/testutil"
)

// The Python router plugin of examples/pyrouter, loaded by the real edged:
// the proof that the plugin contract of core/sdk/PLUGINS.md ("Writing a
// plugin in another language") can be kept without the Go SDK.

const pyConfig = `
[log]
level = "debug"
format = "text"
[admin]
listen = "127.0.0.1:%[1]d"
[sip]
fqdn = "umedge.local"
listen = ["127.0.0.1"]
mode = "tcp"
udp = true
tcp_port = %[2]d
[plugin_host]
dir = %[3]q
start_timeout = "30s"
[plugins.pyrouter]
kind = "router"
binary = "umedge-plugin-pyrouter"
sha256 = "%[4]s"
[plugins.pyrouter.settings.gateway]
name = "lab"
addresses = ["127.0.0.1"]
[plugins.pyrouter.settings.dial_plan]
name = "lab"
extension_digits = 4
pool = "a"
[plugins.pyrouter.settings.mailboxes]
"1001" = "alice"
[plugins.pyrouter.settings.pools.a]
host = "um-a.test"
[plugins.pyrouter.settings.pools.b]
host = "um-b.test"
[plugins.pyrouter.settings.directory]
"2001" = "b"
"2002" = "a"
%[5]s`

// pyInterpreter returns a python3 that has every module the plugin
// imports: the one on PATH, else Debian's (a pyenv or venv python3 on PATH
// has none of the Debian packages). It skips the test when there is none.
func pyInterpreter(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	var out []byte
	for _, py := range candidates {
		var err error
		out, err = exec.Command(py, "-c", "import tomllib, grpc, google.protobuf, cryptography").CombinedOutput()
		if err == nil {
			return py
		}
	}
	t.Skipf("no python3 with tomllib, grpcio, protobuf and cryptography (make test installs the Debian packages): %s", out)
	return ""
}

// pyPluginDir copies the plugin and its generated code into a new plugin
// directory and returns it with the script's sha256.
func pyPluginDir(t *testing.T) (dir, sum string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "plugins")
	pyCopy(t, dir, "umedge-plugin-pyrouter")
	return dir, pySHA256(t, filepath.Join(dir, "umedge-plugin-pyrouter"))
}

// pyCopy copies examples/pyrouter's script into dir as name, and its
// generated code into dir/pyrouter_pb.
func pyCopy(t *testing.T, dir, name string) {
	t.Helper()
	src := filepath.Join(repoRoot(), "examples", "pyrouter")
	gen, err := filepath.Glob(filepath.Join(src, "pyrouter_pb", "*.py"))
	if err != nil || len(gen) == 0 {
		t.Fatalf("no generated code in %s/pyrouter_pb (sh examples/pyrouter/gen.sh): %v", src, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pyrouter_pb"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{filepath.Join(src, "umedge-plugin-pyrouter"): filepath.Join(dir, name)}
	for _, f := range gen {
		files[f] = filepath.Join(dir, "pyrouter_pb", filepath.Base(f))
	}
	for from, to := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func pySHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// pyCheck runs edged config check on config and returns its exit code and
// output.
func pyCheck(t *testing.T, env []string, config string) (int, string) {
	t.Helper()
	bin, _ := binaries(t)
	path := filepath.Join(t.TempDir(), "umedge.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "config", "check", path)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("config check: %v", err)
	return 0, ""
}

// pyEdged is edged running the Python plugin.
type pyEdged struct {
	t         *testing.T
	cmd       *exec.Cmd
	cfg       string
	env       []string
	sipPort   int
	adminPort int
	log       testutil.LockedBuffer
	exited    chan struct{}
}

// pyEnv is the environment under which the plugin's "#!/usr/bin/env
// python3" finds py.
func pyEnv(py string) []string {
	return append(os.Environ(), "PATH="+filepath.Dir(py)+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func startPyEdged(t *testing.T, py string, sipPort, adminPort int, config string) *pyEdged {
	t.Helper()
	bin, _ := binaries(t)
	e := &pyEdged{t: t, env: pyEnv(py), sipPort: sipPort, adminPort: adminPort, exited: make(chan struct{})}
	e.cfg = filepath.Join(t.TempDir(), "umedge.toml")
	e.writeConfig(config)
	e.cmd = exec.Command(bin, "-config", e.cfg)
	e.cmd.Env = e.env
	e.cmd.Stdout, e.cmd.Stderr = &e.log, &e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("edged log:\n%s", tail(e.log.String(), 80))
		}
	})
	return e
}

func (e *pyEdged) writeConfig(text string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfg, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// stop ends edged with SIGTERM, as an init system would, and waits for it.
func (e *pyEdged) stop() {
	select {
	case <-e.exited:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		e.t.Error("edged did not stop within 10 s of SIGTERM")
	}
}

type pyStatus struct {
	Plugins []struct {
		Name     string `json:"name"`
		Kind     string `json:"kind"`
		Plugin   string `json:"plugin"`
		Version  string `json:"version"`
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Restarts int    `json:"restarts"`
	} `json:"plugins"`
	Routing *pyRouting `json:"routing"`
}

type pyRouting struct {
	Generation uint64 `json:"generation"`
	Mailboxes  int    `json:"mailboxes"`
	Decided    uint64 `json:"decided"`
	Asked      uint64 `json:"asked_plugin"`
	AskFailed  uint64 `json:"ask_failed"`
}

func (e *pyEdged) status() (pyStatus, error) {
	var st pyStatus
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", e.adminPort))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitReady waits, for at most d, until the plugin runs and edged has its
// routing table.
func (e *pyEdged) waitReady(d time.Duration) pyStatus {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-e.exited:
			e.t.Fatalf("edged exited:\n%s", tail(e.log.String(), 80))
		default:
		}
		st, err := e.status()
		if err == nil && len(st.Plugins) == 1 && st.Plugins[0].State == "running" &&
			st.Routing != nil && st.Routing.Generation != 0 {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("plugin not running with a routing table within %v (last status %+v, %v)", d, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pyReply is one response to an INVITE.
type pyReply struct {
	code    int
	headers string
}

// pyInvite sends one INVITE over UDP from a socket bound to from (an IP of
// 127.0.0.0/8) and reads the responses until a final one, for at most 5 s.
func pyInvite(t *testing.T, sipPort int, from, user string, extra ...string) []pyReply {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(from, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sipPort}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	tag := hex.EncodeToString(id)
	msg := strings.Join(append([]string{
		fmt.Sprintf("INVITE sip:%s@127.0.0.1:%d SIP/2.0", user, sipPort),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport", c.LocalAddr(), tag),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:1000@%s>;tag=%s", from, tag),
		fmt.Sprintf("To: <sip:%s@127.0.0.1>", user),
		fmt.Sprintf("Call-ID: %s@pyrouter.test", tag),
		"CSeq: 1 INVITE",
		fmt.Sprintf("Contact: <sip:1000@%s>", c.LocalAddr()),
	}, extra...), "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.WriteTo([]byte(msg), dst); err != nil {
		t.Fatal(err)
	}
	var replies []pyReply
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for len(replies) < 10 {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("INVITE %s from %s: %v after %+v", user, from, err, replies)
		}
		var r pyReply
		head, _, _ := bytes.Cut(buf[:n], []byte("\r\n\r\n"))
		status, headers, _ := strings.Cut(string(head), "\r\n")
		if _, err := fmt.Sscanf(status, "SIP/2.0 %d", &r.code); err != nil {
			t.Fatalf("INVITE %s: bad status line %q", user, status)
		}
		r.headers = headers
		replies = append(replies, r)
		if r.code >= 200 {
			return replies
		}
	}
	t.Fatalf("INVITE %s: no final response in %+v", user, replies)
	return nil
}

func pyHeader(r pyReply, name string) string {
	for _, line := range strings.Split(r.headers, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestIntegrationPyRouter(t *testing.T) {
	py := pyInterpreter(t)
	dir, sum := pyPluginDir(t)
	sipPort, adminPort := freePort(t), freePort(t)
	config := func(extra string) string { return fmt.Sprintf(pyConfig, adminPort, sipPort, dir, sum, extra) }
	e := startPyEdged(t, py, sipPort, adminPort, config(""))
	st := e.waitReady(45 * time.Second)
	ready := time.Now()

	t.Run("status names the python plugin", func(t *testing.T) {
		p := st.Plugins[0]
		if p.Name != "pyrouter" || p.Kind != "router" || p.Plugin != "example.pyrouter" || p.Version != "0.1.0" || p.PID == 0 {
			t.Errorf("plugin status = %+v, want pyrouter, router, example.pyrouter 0.1.0, running with a pid", p)
		}
		if st.Routing.Mailboxes != 1 {
			t.Errorf("routing table has %d mailboxes, want the 1 listed", st.Routing.Mailboxes)
		}
	})

	tests := []struct {
		name        string
		giveFrom    string // source address of the INVITE
		giveUser    string // Request-URI user
		giveHeaders []string
		wantCodes   []int
		wantContact string // of the 302
		wantWarning string // reason code in the Warning of a rejection
		wantAsked   uint64 // Route calls the INVITE caused
	}{
		{name: "listed mailbox: 302 from the table, no Route", giveFrom: "127.0.0.1", giveUser: "1001",
			wantCodes: []int{302}, wantContact: "<sip:1001@um-a.test:5062;transport=tcp>"},
		{name: "directory number: 302 from Route (no 100 over UDP)", giveFrom: "127.0.0.1", giveUser: "2001",
			wantCodes: []int{302}, wantContact: "<sip:2001@um-b.test:5062;transport=tcp>", wantAsked: 1},
		{name: "call diverted from a directory number: 302 from Route", giveFrom: "127.0.0.1", giveUser: "5555",
			giveHeaders: []string{"Diversion: <sip:2002@127.0.0.1>;reason=no-answer"},
			wantCodes:   []int{302}, wantContact: "<sip:5555@um-a.test:5062;transport=tcp>", wantAsked: 1},
		{name: "unknown number: 404 from Route", giveFrom: "127.0.0.1", giveUser: "2999",
			wantCodes: []int{404}, wantWarning: "unknown-number", wantAsked: 1},
		{name: "number that does not fit the plan: 404 from the table", giveFrom: "127.0.0.1", giveUser: "20011",
			wantCodes: []int{404}, wantWarning: "bad-number"},
		{name: "source that is no gateway: 403, no Route", giveFrom: "127.0.0.2", giveUser: "2001",
			wantCodes: []int{403}, wantWarning: "unknown-peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.routing()
			replies := pyInvite(t, e.sipPort, tt.giveFrom, tt.giveUser, tt.giveHeaders...)
			var codes []int
			for _, r := range replies {
				codes = append(codes, r.code)
			}
			if fmt.Sprint(codes) != fmt.Sprint(tt.wantCodes) {
				t.Fatalf("responses %v, want %v", codes, tt.wantCodes)
			}
			final := replies[len(replies)-1]
			if got := pyHeader(final, "Contact"); got != tt.wantContact {
				t.Errorf("Contact = %q, want %q", got, tt.wantContact)
			}
			if got := pyHeader(final, "Warning"); !strings.Contains(got, tt.wantWarning) {
				t.Errorf("Warning = %q, want it to name %q", got, tt.wantWarning)
			}
			after := e.routing()
			if got := after.Asked - before.Asked; got != tt.wantAsked {
				t.Errorf("the call asked the plugin %d times, want %d", got, tt.wantAsked)
			}
			if after.AskFailed != before.AskFailed {
				t.Errorf("ask_failed went from %d to %d", before.AskFailed, after.AskFailed)
			}
		})
	}

	t.Run("host services reached over the broker", func(t *testing.T) {
		// Configure makes the plugin dial the Host service the host
		// announced on go-plugin's broker and log through it.
		waitFor(t, 10*time.Second, "the plugin's log line through the Host service", func() bool {
			for _, line := range strings.Split(e.log.String(), "\n") {
				if strings.Contains(line, `msg="pyrouter configured"`) && strings.Contains(line, " plugin=pyrouter ") && !strings.Contains(line, "logger=") &&
					strings.HasSuffix(line, " mailboxes=1 directory=2") {
					return true
				}
			}
			return false
		})
	})

	t.Run("reload: Configure again, a new table", func(t *testing.T) {
		gen := e.routing().Generation
		e.writeConfig(config(`"2003" = "b"` + "\n"))
		if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "a new routing table generation", func() bool { return e.routing().Generation != gen })
		replies := pyInvite(t, e.sipPort, "127.0.0.1", "2003")
		if final := replies[len(replies)-1]; final.code != 302 || pyHeader(final, "Contact") != "<sip:2003@um-b.test:5062;transport=tcp>" {
			t.Errorf("INVITE 2003 after reload: %d, Contact %q; want 302 to um-b.test", final.code, pyHeader(final, "Contact"))
		}
	})

	t.Run("config check lists every settings problem with its key", func(t *testing.T) {
		extra := `"2004" = "nope"` + "\n" + `"12" = "a"` + "\n" +
			"[plugins.pyrouter.settings.pools.c]\nhost = \"\"\ntcp_port = 70000\nport = 1\n"
		code, out := pyCheck(t, e.env, config(extra))
		if code != 1 {
			t.Fatalf("config check exited %d, want 1\n%s", code, out)
		}
		for _, want := range []string{
			`plugins.pyrouter.settings.directory.2004: pool "nope" is not defined`,
			`plugins.pyrouter.settings.directory.12: is not an extension of 4 digits`,
			`plugins.pyrouter.settings.pools.c.host: must not be empty`,
			`plugins.pyrouter.settings.pools.c.tcp_port: must be 0..65535 (0 = none), not 70000`,
			`plugins.pyrouter.settings.pools.c.port: unknown key`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("config check output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("one-file zip application: pinned whole, loads", func(t *testing.T) {
		// README.md's recipe: script as __main__.py and the generated code
		// in one zip application, so that the pin covers all of it.
		app, zdir := filepath.Join(t.TempDir(), "app"), filepath.Join(t.TempDir(), "plugins")
		pyCopy(t, app, "__main__.py")
		if err := os.MkdirAll(zdir, 0o755); err != nil {
			t.Fatal(err)
		}
		zip := filepath.Join(zdir, "umedge-plugin-pyrouter")
		if out, err := exec.Command(py, "-m", "zipapp", app, "-p", "/usr/bin/env python3", "-o", zip).CombinedOutput(); err != nil {
			t.Fatalf("zipapp: %v\n%s", err, out)
		}
		code, out := pyCheck(t, e.env, fmt.Sprintf(pyConfig, adminPort, sipPort, zdir, pySHA256(t, zip), ""))
		if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), ": ok") {
			t.Errorf("config check of the zip application exited %d:\n%s", code, out)
		}
	})

	t.Run("liveness: the host's health probes pass", func(t *testing.T) {
		// The host probes grpc.health.v1 service "plugin" every second and
		// logs each failure; let at least two probes happen.
		time.Sleep(time.Until(ready.Add(2500 * time.Millisecond)))
		if strings.Contains(e.log.String(), "plugin failed a health probe") {
			t.Errorf("the plugin failed a health probe")
		}
		now, err := e.status()
		if err != nil || len(now.Plugins) != 1 {
			t.Fatalf("status: %v, %+v", err, now)
		}
		if p := now.Plugins[0]; p.State != "running" || p.Restarts != 0 || p.PID != st.Plugins[0].PID {
			t.Errorf("plugin now %+v, want still running as pid %d, never restarted", p, st.Plugins[0].PID)
		}
	})

	t.Run("stop: drained, shut down, no process left", func(t *testing.T) {
		pid := st.Plugins[0].PID
		e.stop()
		logText := e.log.String()
		if !strings.Contains(logText, "plugin drained and stopped") {
			t.Errorf("edged did not log a clean drain of the plugin")
		}
		if strings.Contains(logText, "plugin failed to exit gracefully") {
			t.Errorf("the plugin ignored the controller's Shutdown and was killed")
		}
		waitFor(t, 5*time.Second, "the plugin process to be gone", func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		})
	})
}

// routing returns the routing counters of /status.
func (e *pyEdged) routing() pyRouting {
	e.t.Helper()
	st, err := e.status()
	if err != nil || st.Routing == nil {
		e.t.Fatalf("status: %v (routing %v)", err, st.Routing)
	}
	return *st.Routing
}
