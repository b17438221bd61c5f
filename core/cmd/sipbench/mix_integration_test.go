//go:build integration

package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipload"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// mixOptions is a short, unpinned mix step: 200 calls/s for 3 s.
func mixOptions() options {
	return options{duration: 3 * time.Second, recvTimeout: 2 * time.Second, loss: 0.001, seed: 1, mailboxes: sipptest.MixMailboxes}
}

// wantMixCodes counts the answers the step's mix expects.
func wantMixCodes(t *testing.T, o options, calls int) map[int]int {
	t.Helper()
	f, err := sipptest.WriteMix(t.TempDir(), sipptest.Mix{Seed: o.seed, Mailboxes: o.mailboxes, Calls: calls})
	if err != nil {
		t.Fatalf("WriteMix() = %v", err)
	}
	want := map[int]int{}
	for _, c := range f.Calls {
		want[c.Code]++
	}
	return want
}

// checkMixStep runs one mix step against srv with each load generator
// and wants every call to get its line's answer.
func checkMixStep(t *testing.T, srv server) {
	t.Helper()
	o := mixOptions()
	const rate = 200
	want := wantMixCodes(t, o, rate*3)
	for _, c := range []struct{ gen, tp string }{{generatorSIPp, "udp"}, {generatorSIPp, "tcp"}, {generatorGo, "udp"}, {generatorGo, "tcp"}} {
		o.generator = c.gen
		tp := c.tp
		t.Run(c.gen+"/"+tp, func(t *testing.T) {
			s, err := measure(context.Background(), o, srv, scenarioMix, tp, rate)
			if err != nil {
				t.Fatalf("measure() = %v", err)
			}
			t.Logf("%s", s)
			if !s.Pass || s.Successful != s.Planned || s.Failed != 0 {
				t.Errorf("step %s, want all %d calls answered as their lines expect", s, s.Planned)
			}
			if s.Codes[302] != want[302] || s.Codes[404] != want[404] || len(s.Codes) != 2 {
				t.Errorf("answers %v, want %v", s.Codes, want)
			}
			if s.generator() != c.gen || s.LoadCPU <= 0 || (c.gen == generatorGo) != (s.LatP50 > 0) {
				t.Errorf("step by %s with cpu %v and latency p50 %v, want %s with its cpu (and latency for go)", s.generator(), s.LoadCPU, s.LatP50, c.gen)
			}
		})
	}
}

// Kamailio's own syntax check accepts the mix config.
func TestKamailioMixConfigChecks(t *testing.T) {
	k := testKamailio(t)
	dir := t.TempDir()
	f, err := sipptest.WriteMix(dir, sipptest.Mix{Seed: 1, Calls: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.command(dir, 5090, workload{mix: f}); err != nil {
		t.Fatalf("command() = %v", err)
	}
	if out, err := exec.Command(k.bin, "-c", "-f", filepath.Join(dir, "kamailio.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("kamailio -c: %v\n%s", err, out)
	}
}

// The Kamailio reference answers every line of the mix as the line
// expects: the Kamailio config and the CSV agree.
func TestIntegrationMixKamailio(t *testing.T) {
	checkMixStep(t, testKamailio(t))
}

// Kamailio with the single call's config (a 302 to 127.0.0.1 for every
// INVITE) fails exactly the mix lines that expect anything else, with SIPp
// and with the Go generator: the mix step checks the answers, not just
// that there is one.
func TestIntegrationMixKamailioWithoutDirectory(t *testing.T) {
	k := testKamailio(t)
	dir := t.TempDir()
	f, err := sipptest.WriteMix(dir, sipptest.Mix{Seed: 1, Calls: 400})
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for _, c := range f.Calls {
		if c.Contact == c.Called+"@127.0.0.1:5062" {
			right++
		}
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startServer(k, "", dir, port, workload{})
	if err != nil {
		t.Fatalf("startServer() = %v", err)
	}
	defer p.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := sipptest.Run{Scenario: sipptest.UACMix, Inject: f.CSV, Target: fmt.Sprintf("127.0.0.1:%d", port),
		Calls: len(f.Calls), Rate: 400, RecvTimeout: 2 * time.Second}.Exec(ctx, t)
	if err != nil {
		t.Fatalf("Exec() = %v", err)
	}
	if res.Successful != right || res.Failed != len(f.Calls)-right || right == 0 || right == len(f.Calls) {
		t.Errorf("result %s, want %d successful (the lines that expect a 302 to 127.0.0.1) of %d", res, right, len(f.Calls))
	}

	// The Go generator fails the same calls, each for its reason: a line
	// expecting 404 got a 302, a line expecting 127.0.0.2 got 127.0.0.1.
	wrongStatus := 0
	for _, c := range f.Calls {
		if c.Code != 302 {
			wrongStatus++
		}
	}
	lines, err := sipload.ReadCSV(f.CSV)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{"udp", "tcp"} {
		gres, err := sipload.Run(ctx, sipload.Config{Target: fmt.Sprintf("127.0.0.1:%d", port), Transport: tp, Lines: lines, Rate: 400, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("sipload.Run(%s) = %v", tp, err)
		}
		t.Logf("go %s: %s", tp, gres)
		if gres.Successful != right || gres.Failures["FailedUnexpectedStatus"] != wrongStatus ||
			gres.Failures["FailedContactMismatch"] != len(f.Calls)-right-wrongStatus || gres.Failed != len(f.Calls)-right {
			t.Errorf("go generator over %s: %s, want %d successful, %d with the wrong status, %d with the wrong Contact",
				tp, gres, right, wrongStatus, len(f.Calls)-right-wrongStatus)
		}
	}
}

var (
	buildOnce              sync.Once
	builtEdged, builtPlugs string
	errBuild               error
)

// builtBinaries builds edged and the umrouter plugin from this tree once
// per test run, as `make build plugins` does, and pins the plugin in
// plugins.sha256 beside the plugin directory.
func builtBinaries(t *testing.T) (edged, plugins string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sipbench-it-")
		if err != nil {
			errBuild = err
			return
		}
		builtEdged, builtPlugs = filepath.Join(dir, "edged"), filepath.Join(dir, "plugins")
		plugin := filepath.Join(builtPlugs, "umedge-plugin-umrouter")
		for _, args := range [][]string{
			{"build", "-o", builtEdged, "./core/cmd/edged"},
			{"build", "-o", plugin, "./plugins/umrouter"},
		} {
			cmd := exec.Command("go", args...)
			cmd.Dir = filepath.Join("..", "..", "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				errBuild = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		b, err := os.ReadFile(plugin)
		if err != nil {
			errBuild = err
			return
		}
		sum := fmt.Sprintf("%x  %s\n", sha256.Sum256(b), filepath.Base(plugin))
		errBuild = os.WriteFile(builtPlugs+".sha256", []byte(sum), 0o644)
	})
	if errBuild != nil {
		t.Fatalf("build edged and the plugin: %v", errBuild)
	}
	return builtEdged, builtPlugs
}

// edged with the 10,000-mailbox directory answers every line of the mix as
// the line expects, from the routing table in the core.
func TestIntegrationMixEdged(t *testing.T) {
	edged, plugins := builtBinaries(t)
	template, err := filepath.Abs(filepath.Join("..", "..", "..", "configs", "umedge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	checkMixStep(t, edgedServer{bin: edged, plugins: plugins, template: template})
}
