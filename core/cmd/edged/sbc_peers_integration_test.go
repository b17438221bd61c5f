//go:build integration

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// peersLab is the lab with mailbox 1001 in proxy pool "trunk" of two SIP
// peers on 127.0.0.1: "first" over TCP on tcpPort and "second" speaking
// UDP only on udpPort, probed every 200 ms; sbc is appended to [sbc].
func peersLab(t *testing.T, tcpPort, udpPort int, cdr, sbc string) lab {
	t.Helper()
	l := newLab(t)
	l.Mailbox1001Pool = "trunk"
	l.Raw = l.render(t) + fmt.Sprintf(`
[plugins.umrouter.settings.pools.trunk]
action = "proxy"
options_interval = "200ms"
[[plugins.umrouter.settings.pools.trunk.backends]]
name = "first"
host = "127.0.0.1"
tcp_port = %d
tls_port = 0
[[plugins.umrouter.settings.pools.trunk.backends]]
name = "second"
host = "127.0.0.1"
udp_port = %d
tcp_port = 0
tls_port = 0

[media]
port_min = 62000
port_max = 62999

[sbc]
cdr_file = %q
%s
`, tcpPort, udpPort, cdr, sbc)
	return l
}

// peer starts a SIPp SIP peer (sbc_uas_peer.xml) answering OPTIONS with
// code, over tp ("t1" or "u1") on port.
func peer(t *testing.T, name, tp string, port, code int) *sippProc {
	t.Helper()
	b, err := os.ReadFile(sbcScenario("sbc_uas_peer.xml"))
	if err != nil {
		t.Fatal(err)
	}
	sf := filepath.Join(t.TempDir(), "peer.xml")
	if err := os.WriteFile(sf, bytes.Replace(b, []byte("SIP/2.0 404 Alive"), []byte(fmt.Sprintf("SIP/2.0 %d Alive", code)), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startSIPp(t, name, "-sf", sf, "-t", tp, "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)))
	time.Sleep(300 * time.Millisecond) // listening
	return p
}

// probeOf returns the /status probe of a trunk back end.
func (e *edged) probeOf(backend string) map[string]any {
	res, err := e.get("/status")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var st struct {
		Pools []struct {
			Name     string `json:"name"`
			Backends []struct {
				Name    string         `json:"name"`
				Healthy bool           `json:"healthy"`
				Probe   map[string]any `json:"probe"`
			} `json:"backends"`
		} `json:"pools"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return nil
	}
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			if p.Name == "trunk" && b.Name == backend && b.Probe != nil {
				b.Probe["healthy"] = b.Healthy
				return b.Probe
			}
		}
	}
	return nil
}

// R-SBC-6 against SIPp peers: each configured SIP peer of a proxy pool is
// kept alive with OPTIONS over the transport it speaks (a UDP-only trunk
// over UDP), a 404 counts as alive, a peer that stops answering is down
// after options_down_after failures and probed every
// options_interval_down meanwhile, calls go to the other peer while it is
// down, and it is back after options_up_after answers in a row; /status
// and umedge_health_up show it.
func TestIntegrationSBCPeerKeepAlive(t *testing.T) {
	sipptest.Require(t)
	tcpPort, udpPort := freePort(t), freePort(t)
	first := peer(t, "first", "t1", tcpPort, 404)
	peer(t, "second", "u1", udpPort, 200)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, peersLab(t, tcpPort, udpPort, cdr, `[sbc.peers.trunk]
options_interval_down = "500ms"
options_up_after = 3
options_down_after = 2
`))

	waitFor(t, 5*time.Second, "both peers answering", func() bool {
		a, b := e.probeOf("first"), e.probeOf("second")
		return a != nil && b != nil && a["last_code"] == 404.0 && b["last_code"] == 200.0 && a["healthy"] == true && b["healthy"] == true
	})
	if a, b := e.probeOf("first"), e.probeOf("second"); a["target"] != fmt.Sprintf("127.0.0.1:%d/tcp", tcpPort) ||
		b["target"] != fmt.Sprintf("127.0.0.1:%d/udp", udpPort) || a["interval"] != "200ms" {
		t.Errorf("probes %v and %v: want tcp to first, udp to second, every 200ms", a, b)
	}

	// first stops answering (the process is frozen: its socket stays open).
	if err := first.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = first.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	waitFor(t, 10*time.Second, "first down", func() bool { p := e.probeOf("first"); return p != nil && p["healthy"] == false })
	p := e.probeOf("first")
	if p["consecutive_failed"].(float64) < 2 || p["interval"] != "500ms" {
		t.Errorf("first went down with %v: want 2 failures at least, probed every 500ms now", p)
	}
	if v := e.metric(`umedge_health_up{target="backend/trunk/first"}`); v != 0 {
		t.Errorf("umedge_health_up of first = %v while down", v)
	}

	// Calls go to second meanwhile, every one.
	const calls = 4
	callers := startSIPp(t, "callers", e.target("udp"), "-sf", sbcScenario("sbc_uac_short.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001",
		"-m", strconv.Itoa(calls), "-r", "20")
	callers.wait(t, 20*time.Second)
	waitFor(t, 5*time.Second, "the CDRs", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == calls })
	for _, rec := range readCDRs(t, cdr) {
		if rec["backend"] != "second" || rec["status"] != 200.0 {
			t.Errorf("a call while first is down: backend %v, status %v", rec["backend"], rec["status"])
		}
	}

	// first answers again: up after 3 answers in a row, not at the first.
	if err := first.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitFor(t, 10*time.Second, "first up again", func() bool { p := e.probeOf("first"); return p != nil && p["healthy"] == true })
	if p := e.probeOf("first"); p["consecutive_ok"].(float64) < 3 || p["interval"] != "200ms" {
		t.Errorf("first came back with %v: want 3 answers in a row at least, probed every 200ms again", p)
	}
	if v := e.metric(`umedge_health_up{target="backend/trunk/first"}`); v != 1 {
		t.Errorf("umedge_health_up of first = %v once up", v)
	}
}

// R-SBC-8 against a SIPp burst: with a limit of r calls a second (the
// appliance's sbc.calls_per_second, or the calling gateway's
// [sbc.peers.lab] one), of 30 calls sent at 100/s about a second's worth
// get through (r, and what the bucket refills during the burst); every
// other one gets 503 with Retry-After and the limit at once and is
// counted in umedge_sbc_calls_total{outcome="rate-limited"}.
func TestIntegrationSBCCallRate(t *testing.T) {
	sipptest.Require(t)
	for _, tt := range []struct {
		name, sbc, warning string
		rate               int
	}{
		{"appliance", "calls_per_second = 5\n", "appliance over 5 calls/s", 5},
		{"gateway", "calls_per_second = 50\n[sbc.peers.lab]\ncalls_per_second = 3\n", "gateway lab over 3 calls/s", 3},
	} {
		t.Run(tt.name, func(t *testing.T) { callBurst(t, tt.sbc, tt.warning, tt.rate) })
	}
}

func callBurst(t *testing.T, sbc, warning string, rate int) {
	t.Helper()
	callee := freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, callee, cdr, sbc))
	peer(t, "callee", "t1", callee, 200)
	const calls = 30
	start := time.Now()
	burst := startSIPp(t, "burst", e.target("udp"), "-sf", sbcScenario("sbc_uac_burst.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001",
		"-m", strconv.Itoa(calls), "-r", "100")
	burst.wait(t, 30*time.Second)
	took := time.Since(start)

	refused := 0
	for _, m := range burst.received(t) {
		if strings.Contains(m, "SIP/2.0 503 ") {
			refused++
			if !strings.Contains(m, "Retry-After: ") || !strings.Contains(m, warning) {
				t.Errorf("a 503 without Retry-After or %q:\n%s", warning, m)
			}
		}
	}
	admitted := calls - refused
	waitFor(t, 5*time.Second, "the CDRs", func() bool {
		_, err := os.Stat(cdr)
		return err == nil && len(readCDRs(t, cdr)) == admitted
	})
	// The burst lasts about 0.3 s; SIPp's own pace may stretch it.
	if most := rate + int(float64(rate)*took.Seconds()) + 1; admitted < rate || admitted > most {
		t.Errorf("%d of %d calls admitted in %v, want %d..%d", admitted, calls, took, rate, most)
	}
	for _, rec := range readCDRs(t, cdr) {
		if rec["status"] != 200.0 {
			t.Errorf("an admitted call ended %v %v", rec["status"], rec["reason"])
		}
	}
	if got := e.metric(`umedge_sbc_calls_total{outcome="rate-limited"}`); got != float64(refused) {
		t.Errorf("rate-limited counter %v, SIPp got %d 503s", got, refused)
	}
	t.Logf("%d of %d calls admitted, %d refused with 503 in %v", admitted, calls, refused, took)
}
