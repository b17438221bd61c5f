//go:build integration

package main

import (
	"context"
	"math"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// checkB2BUAStep runs one short b2bua step against srv per back-end
// transport: every call gets its answer, each callee takes exactly its
// host's calls, and the answered calls are held and hung up.
func checkB2BUAStep(t *testing.T, srv server, generator string) {
	t.Helper()
	const rate = 150
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			o := options{duration: 2 * time.Second, recvTimeout: 3 * time.Second, loss: 0.001, seed: 1,
				mailboxes: sipptest.MixMailboxes, hold: 200 * time.Millisecond, backendTransport: tp, generator: generator}
			f, err := sipptest.WriteMix(t.TempDir(), sipptest.Mix{Seed: o.seed, Mailboxes: o.mailboxes, Calls: 2 * rate})
			if err != nil {
				t.Fatal(err)
			}
			want, err := wantPerHost(f, backendHosts())
			if err != nil {
				t.Fatal(err)
			}
			s, err := measure(context.Background(), o, srv, scenarioB2BUA, "udp", rate)
			if err != nil {
				t.Fatalf("measure() = %v", err)
			}
			t.Logf("%s", s)
			if !s.Pass || s.Successful != s.Planned || s.Misrouted != 0 || s.Answered != want[0]+want[1] {
				t.Errorf("step %s, want all %d calls as their lines expect and %d answered by the callees", s, s.Planned, want[0]+want[1])
			}
			// A 200 for each INVITE and each BYE of an answered call, a 404 for the rest.
			if s.Codes[200] != 2*s.Answered || s.Codes[404] != s.Planned-s.Answered {
				t.Errorf("answers %v, want 200×%d 404×%d", s.Codes, 2*s.Answered, s.Planned-s.Answered)
			}
			if s.Generator != generator && generator == generatorGo || s.LoadCPU <= 0 || generator == generatorGo && (s.CalleeCPU <= 0 || s.CalleeCPU >= s.LoadCPU || s.GenNotes != "") {
				t.Errorf("generator %q cpu %v (callees %v), notes %q: want the %s generator's CPU, caller and callees, and no notes", s.Generator, s.LoadCPU, s.CalleeCPU, s.GenNotes, generator)
			}
		})
	}
}

// Kamailio's own syntax check accepts the stateful proxy config.
func TestKamailioProxyConfigChecks(t *testing.T) {
	k := testKamailio(t)
	dir := t.TempDir()
	f, err := sipptest.WriteMix(dir, sipptest.Mix{Seed: 1, Calls: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.command(dir, 5090, workload{mix: f, backend: &backend{port: 5070, transport: "tcp"}}); err != nil {
		t.Fatalf("command() = %v", err)
	}
	if out, err := exec.Command(k.bin, "-c", "-f", filepath.Join(dir, "kamailio.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("kamailio -c: %v\n%s", err, out)
	}
	k.rtpengine = testRTPEngine(t)
	args, _, err := k.command(dir, 5090, workload{mix: f, backend: &backend{port: 5070, transport: "udp"}})
	if err != nil {
		t.Fatalf("command() with rtpengine = %v", err)
	}
	if args[0] != "sh" {
		t.Fatalf("command with rtpengine = %q, want the shell that starts rtpengine first", args)
	}
	if out, err := exec.Command(k.bin, "-c", "-f", filepath.Join(dir, "kamailio.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("kamailio -c with rtpengine: %v\n%s", err, out)
	}
}

func TestIntegrationB2BUAKamailio(t *testing.T) {
	k := testKamailio(t)
	k.shmMB = 256
	checkB2BUAStep(t, k, generatorSIPp)
}

// The same calls from the Go generator (sipload's UAC and UASes).
func TestIntegrationB2BUAKamailioGo(t *testing.T) {
	k := testKamailio(t)
	k.shmMB = 256
	checkB2BUAStep(t, k, generatorGo)
}

// The SBC reference with media: Kamailio's proxy refuses a call whose
// offer rtpengine did not take, so every answered call here had its media
// anchored there.
func TestIntegrationB2BUAKamailioRTPEngine(t *testing.T) {
	k := testKamailio(t)
	k.shmMB = 256
	k.rtpengine = testRTPEngine(t)
	checkB2BUAStep(t, k, generatorSIPp)
}

func testRTPEngine(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		t.Fatalf("rtpengine is required (make test installs rtpengine-daemon): %v", err)
	}
	return bin
}

func TestIntegrationB2BUAEdged(t *testing.T) {
	checkB2BUAStep(t, testEdged(t), generatorSIPp)
}

// The same calls from the Go generator (sipload's UAC and UASes).
func TestIntegrationB2BUAEdgedGo(t *testing.T) {
	checkB2BUAStep(t, testEdged(t), generatorGo)
}

// testEdged is edged built from this tree with the shipped config.
func testEdged(t *testing.T) edgedServer {
	t.Helper()
	edged, plugins := builtBinaries(t)
	template, err := filepath.Abs(filepath.Join("..", "..", "..", "configs", "umedge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return edgedServer{bin: edged, plugins: plugins, template: template}
}

// checkMemoryRun runs a short memory measurement against srv: 600 calls
// held 12 s, and returns it after checking the PSS pass and that the
// server's own figure was read.
func checkMemoryRun(t *testing.T, srv server) activeCalls {
	t.Helper()
	o := options{recvTimeout: 3 * time.Second, loss: 0.001, seed: 1, mailboxes: sipptest.MixMailboxes,
		backendTransport: "udp", generator: generatorGo, activeCalls: 600, activeHold: minActiveHold}
	a, err := measureActive(context.Background(), o, srv, "udp")
	if err != nil {
		t.Fatalf("measureActive() = %v", err)
	}
	t.Logf("%s", a)
	// 90 % of the mix's calls reach a callee and are held.
	if !a.Step.Pass || a.Up < 500 || a.UpEnd != a.Up {
		t.Errorf("%d calls up (%d at the end), step %s: want ~540 all through the plateau", a.Up, a.UpEnd, a.Step)
	}
	if a.Self == nil || a.Self.IdleN < 1 || a.Self.ActiveN < 1 {
		t.Fatalf("own memory figure %+v, want readings at idle and on the plateau", a.Self)
	}
	return a
}

// edged's live heap grows by a plausible amount per active call (the
// in-process BenchmarkCallMemory alone is ~5.5 KiB without media); a
// binary without go_gc_heap_live_bytes fails measureActive.
func TestIntegrationMemoryPerCallEdged(t *testing.T) {
	a := checkMemoryRun(t, testEdged(t))
	if got := a.SelfPerCallKiB(); !(got >= 0.5 && got <= 200) {
		t.Errorf("live heap per active call %.2f KiB, want 0.5–200", got)
	}
	if a.Self.Kind != "Go live heap" || a.KernelSockets != 4 || a.Self.ActiveN < 1 {
		t.Errorf("figure %+v, kernel sockets %d: want the live heap and 4 media sockets a call", a.Self, a.KernelSockets)
	}
}

// Kamailio's shared memory: the calls' INVITE transactions take it while
// they are kept (a positive figure per call placed), and what the calls
// up keep once those are gone is what a tm + rr proxy keeps per dialog —
// nothing to speak of (no dialog module): 0–200 KiB, never unknown.
func TestIntegrationMemoryPerCallKamailio(t *testing.T) {
	k := testKamailio(t)
	k.shmMB = 256
	a := checkMemoryRun(t, k)
	// Kamailio keeps nothing per established call (tm + rr, no dialog):
	// real_used may end a little below idle once the transactions are
	// freed, so a few bytes a call either way.
	if got := a.SelfPerCallKiB(); !(got >= -0.5 && got <= 200) {
		t.Errorf("shm per active call %.2f KiB, want -0.5–200", got)
	}
	if setup := float64(a.SetupBytes-a.Self.Idle) / 1024 / float64(a.Step.Planned); !(setup >= 0.5 && setup <= 200) {
		t.Errorf("shm per call placed during setup %.2f KiB (%d → %d bytes), want 0.5–200: the transactions", setup, a.Self.Idle, a.SetupBytes)
	}
	if got := a.PkgPerCallKiB(); math.IsNaN(got) || a.Self.Kind != "shm" {
		t.Errorf("figure %+v: want shm and the pkg memory read", a.Self)
	}
}
