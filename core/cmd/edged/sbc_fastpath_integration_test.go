//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
	"golang.org/x/sys/unix"
)

// The kernel fast path through the whole SBC: a SIPp caller and a SIPp
// callee in namespaces of their own on veths to the namespace edged runs
// in, a proxy call with G.711 both ways, the kernel carrying ≥ 99 % of the
// packets after both legs latched and the CDR counting every packet the
// peers sent; then the same call with media.fast_path = "off".
func TestIntegrationSBCFastPath(t *testing.T) {
	fastPathAvailable(t)
	for _, mode := range []string{"tc", "off"} {
		t.Run("fast_path="+mode, func(t *testing.T) { fastPathCall(t, mode) })
	}
}

// fastPathAvailable fails the test without SIPp and skips it without root.
func fastPathAvailable(t *testing.T) {
	t.Helper()
	sipptest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and BPF need root")
	}
}

// nsLab is three namespaces: caller, edged, callee.
type nsLab struct {
	caller, edged, callee string
	callerIP, aIP         string // the caller and edged's address towards it
	calleeIP, bIP         string
}

func newNSLab(t *testing.T) nsLab {
	t.Helper()
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	x := 16 + rand.IntN(200)
	l := nsLab{caller: "um-sc-" + tag, edged: "um-se-" + tag, callee: "um-sb-" + tag,
		callerIP: fmt.Sprintf("10.%d.1.2", x), aIP: fmt.Sprintf("10.%d.1.1", x),
		calleeIP: fmt.Sprintf("10.%d.2.2", x), bIP: fmt.Sprintf("10.%d.2.1", x)}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, n := range []string{l.caller, l.edged, l.callee} {
		ip("netns", "add", n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
		ip("-n", n, "link", "set", "lo", "up")
	}
	vethHost(t, l.edged, "ea", l.caller, l.callerIP, l.aIP)
	vethHost(t, l.edged, "eb", l.callee, l.calleeIP, l.bIP)
	return l
}

// vethHost joins namespace host to edged's by a veth (dev on edged's side,
// local its address there; p0 with hostIP on host's side, /24s), host's
// default route through edged.
func vethHost(t *testing.T, edged, dev, host, hostIP, local string) {
	t.Helper()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("-n", edged, "link", "add", dev, "type", "veth", "peer", "name", "p0", "netns", host)
	ip("-n", edged, "addr", "add", local+"/24", "dev", dev)
	ip("-n", edged, "link", "set", dev, "up")
	ip("-n", host, "addr", "add", hostIP+"/24", "dev", "p0")
	ip("-n", host, "link", "set", "p0", "up")
	// Every address of edged's is reachable from each side: the B2BUA may
	// announce either on a leg (the address its connection to the back end
	// left from).
	ip("-n", host, "route", "add", "default", "via", local)
}

// client is an HTTP client whose connections are made inside ns (edged's
// admin API listens on its loopback).
func nsClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Setns(fd, unix.CLONE_NEWNET)
				_ = unix.Close(fd)
			}
			if err != nil {
				ch <- res{nil, err}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial}}
}

// nsEdged is edged running in a lab's namespace.
type nsEdged struct {
	l          nsLab
	lb         lab
	hc         *http.Client
	admin, cdr string
	calleePort int
}

// startNSEdged runs edged in l's middle namespace with media.fast_path =
// mode and the extra [media] lines.
func startNSEdged(t *testing.T, l nsLab, mode, media string) *nsEdged {
	t.Helper()
	calleePort := freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	lb := sbcLab(t, calleePort, cdr, "")
	raw := strings.Replace(lb.Raw, `listen = ["127.0.0.1", "::1"]`, fmt.Sprintf(`listen = [%q, %q, "127.0.0.1"]`, l.aIP, l.bIP), 1)
	raw = strings.Replace(raw, fmt.Sprintf("host = \"127.0.0.1\"\ntcp_port = %d", calleePort), fmt.Sprintf("host = %q\ntcp_port = %d", l.calleeIP, calleePort), 1)
	raw = strings.Replace(raw, "[plugins.umrouter.settings.gateways.lab]\naddresses = [\"127.0.0.1\", \"::1\"]",
		fmt.Sprintf("[plugins.umrouter.settings.gateways.lab]\naddresses = [%q, \"127.0.0.1\", \"::1\"]", l.callerIP), 1)
	raw = strings.Replace(raw, "port_max = 61999\n", "port_max = 61999\nfast_path = \""+mode+"\"\n"+media, 1)
	if !strings.Contains(raw, l.calleeIP) || !strings.Contains(raw, `addresses = ["`+l.callerIP) || !strings.Contains(raw, "fast_path") {
		t.Fatalf("the lab config changed shape; cannot place it in namespaces:\n%s", lb.Raw)
	}
	bin, _ := binaries(t)
	cfg := filepath.Join(t.TempDir(), "umedge.toml")
	if err := os.WriteFile(cfg, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	cmd := exec.Command("ip", "netns", "exec", l.edged, bin, "-config", cfg)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("edged log:\n%s", tail(log.String(), 60))
		}
	})
	hc := nsClient(l.edged)
	admin := fmt.Sprintf("http://127.0.0.1:%d", lb.AdminPort)
	waitFor(t, 15*time.Second, "edged healthy", func() bool {
		select {
		case <-exited:
			t.Fatalf("edged exited:\n%s", log.String())
		default:
		}
		r, err := hc.Get(admin + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	return &nsEdged{l: l, lb: lb, hc: hc, admin: admin, cdr: cdr, calleePort: calleePort}
}

// fastPathCall runs one call through edged with media.fast_path = mode.
func fastPathCall(t *testing.T, mode string) {
	t.Helper()
	l := newNSLab(t)
	e := startNSEdged(t, l, mode, "")
	lb, hc, admin, cdr, calleePort := e.lb, e.hc, e.admin, e.cdr, e.calleePort
	calleeMedia, callerPort, callerMedia := freePort(t), freePort(t), freePort(t)

	testdata := filepath.Join(repoRoot(), "core", "cmd", "edged", "testdata")
	callee := startSIPpIn(t, l.callee, "callee", "-sf", filepath.Join(testdata, "sbc_uas.xml"), "-t", "t1",
		"-i", l.calleeIP, "-p", strconv.Itoa(calleePort), "-mi", l.calleeIP, "-mp", strconv.Itoa(calleeMedia), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	caller := startSIPpIn(t, l.caller, "caller", fmt.Sprintf("%s:%d", l.aIP, lb.SIPPort), "-sf", filepath.Join(testdata, "sbc_uac.xml"), "-t", "u1",
		"-i", l.callerIP, "-p", strconv.Itoa(callerPort), "-mi", l.callerIP, "-mp", strconv.Itoa(callerMedia), "-s", "1001", "-m", "1")

	// While media flows, /calls says which path each leg takes.
	want := "userspace"
	if mode == "tc" {
		want = "kernel"
	}
	waitFor(t, 10*time.Second, "both legs on the "+want+" path in /calls", func() bool {
		var calls []struct {
			Media struct{ Legs []struct{ Path string } } `json:"media"`
		}
		r, err := hc.Get(admin + "/calls")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		if json.NewDecoder(r.Body).Decode(&calls) != nil || len(calls) != 1 || len(calls[0].Media.Legs) != 2 {
			return false
		}
		return calls[0].Media.Legs[0].Path == want && calls[0].Media.Legs[1].Path == want
	})
	caller.wait(t, 30*time.Second)
	callee.wait(t, 10*time.Second)
	if testing.Verbose() {
		t.Logf("callee's first message:\n%s", callee.received(t)[0])
	}

	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 1 })
	rec := readCDRs(t, cdr)[0]
	a, b := leg(t, rec, 0), leg(t, rec, 1)
	// Each SIPp plays the same 236-packet pcap; the CDR counts every packet
	// whichever path carried it.
	const played = 236
	for _, dir := range []struct {
		name    string
		in, out map[string]any
	}{{"caller → callee", a, b}, {"callee → caller", b, a}} {
		if in, out := num(dir.in, "PacketsIn"), num(dir.out, "PacketsOut"); in != played || out != played {
			t.Errorf("%s: CDR %v packets in, %v out; the peer sent %d", dir.name, in, out, played)
		}
	}
	kernelCarried(t, mode, hc, admin, a, b)
}

// kernelCarried checks a call's CDR legs a and b: with fast_path = tc the
// kernel carried ≥ 99 % of the packets after both legs latched (the legs'
// PacketsKernel against what userspace took in after latching:
// PacketsLatchedUserspace), and the program's forwarded count is the legs';
// with the fast path off the kernel carried nothing and userspace the
// packets after latching.
func kernelCarried(t *testing.T, mode string, hc *http.Client, admin string, a, b map[string]any) {
	t.Helper()
	kernel := num(a, "PacketsKernel") + num(b, "PacketsKernel")
	late := num(a, "PacketsLatchedUserspace") + num(b, "PacketsLatchedUserspace")
	total := num(a, "PacketsIn") + num(b, "PacketsIn")
	fwd, ok := scrape(t, hc, admin, `umedge_media_fastpath_packets_total{verdict="forwarded"}`)
	switch {
	case mode == "off" && (ok || kernel != 0):
		t.Errorf("fast path off, yet the kernel forwarded %v packets (the legs say %v)", fwd, kernel)
	case mode == "off" && (late < total/2 || late > total):
		// All but the caller's packets until the callee's first, which
		// depends on when each SIPp begins to play (up to 330 ms apart
		// seen on a loaded machine).
		t.Errorf("fast path off: userspace took %v of %v packets after latching", late, total)
	case mode == "tc" && kernel < 0.99*(kernel+late):
		t.Errorf("after latching the kernel carried %v packets, userspace %v: want ≥ 99 %% by the kernel", kernel, late)
	case mode == "tc" && (fwd < kernel || fwd > kernel+2):
		t.Errorf("the program forwarded %v packets, the legs count %v by the kernel", fwd, kernel)
	}
	t.Logf("fast_path=%s: %v packets in; after latching %v by the kernel, %v by userspace (program: %v forwarded)",
		mode, total, kernel, late, fwd)
}

// scrape reads one sample of /metrics; ok is false when it is absent.
func scrape(t *testing.T, hc *http.Client, admin, name string) (float64, bool) {
	t.Helper()
	r, err := hc.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v, true
		}
	}
	return 0, false
}

// TestIntegrationSBCFastPathInactivity: media the kernel forwards keeps the
// call up (edged reads the entries' last-seen time); once both SIPps fall
// silent the inactivity timeout ends it, as with the fast path off.
func TestIntegrationSBCFastPathInactivity(t *testing.T) {
	fastPathAvailable(t)
	for _, mode := range []string{"tc", "off"} {
		t.Run("fast_path="+mode, func(t *testing.T) { fastPathInactivity(t, mode) })
	}
}

func fastPathInactivity(t *testing.T, mode string) {
	t.Helper()
	l := newNSLab(t)
	e := startNSEdged(t, l, mode, "inactivity_timeout = \"2s\"\n")
	testdata := filepath.Join(repoRoot(), "core", "cmd", "edged", "testdata")
	callee := startSIPpIn(t, l.callee, "callee", "-sf", filepath.Join(testdata, "sbc_uas.xml"), "-t", "t1",
		"-i", l.calleeIP, "-p", strconv.Itoa(e.calleePort), "-mi", l.calleeIP, "-mp", strconv.Itoa(freePort(t)), "-m", "1")
	time.Sleep(300 * time.Millisecond) // listening
	start := time.Now()
	caller := startSIPpIn(t, l.caller, "caller", fmt.Sprintf("%s:%d", l.aIP, e.lb.SIPPort), "-sf", filepath.Join(testdata, "sbc_uac_play_wait.xml"),
		"-t", "u1", "-i", l.callerIP, "-p", strconv.Itoa(freePort(t)), "-mi", l.callerIP, "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1")
	caller.wait(t, 30*time.Second)
	callee.wait(t, 10*time.Second)
	// The pcap plays 7 s, with the fast path on the kernel path after the
	// first packets; then 2 s of silence end the call.
	if d := time.Since(start); d < 8*time.Second || d > 15*time.Second {
		t.Errorf("the call lasted %v; want the 7 s of media, then the 2 s timeout", d)
	}
	waitFor(t, 5*time.Second, "the CDR", func() bool { _, err := os.Stat(e.cdr); return err == nil && len(readCDRs(t, e.cdr)) == 1 })
	rec := readCDRs(t, e.cdr)[0]
	if rec["reason"] != "media timeout" {
		t.Errorf("CDR reason %v, want media timeout", rec["reason"])
	}
	a, b := leg(t, rec, 0), leg(t, rec, 1)
	if total := num(a, "PacketsIn") + num(b, "PacketsIn"); total != 472 {
		t.Errorf("%v packets in the CDR, want the 472 the peers sent", total)
	}
	kernelCarried(t, mode, e.hc, e.admin, a, b)
}
