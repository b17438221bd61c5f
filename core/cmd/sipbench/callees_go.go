package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/umedge/umedge/core/internal/sipload"
)

// uasChildValue of uacEnv makes the sipbench binary the Go callees of
// scenario b2bua: one sipload.UAS per back-end host in one process,
// pinned as the caller is, so that their CPU time is their process's.
const uasChildValue = "uas"

// calleeReport is what the Go callees write to their stats file: every
// statsEvery while they run, and once more when they end.
type calleeReport struct {
	Hosts []sipload.UASStats
	// Final is set in the last report, written after SIGTERM.
	Final bool
}

const statsEvery = 100 * time.Millisecond

// uasMain runs a UAS on each -listen address until SIGTERM, writing
// their statistics to -stats.
func uasMain(args []string) error {
	fs := flag.NewFlagSet("uas", flag.ContinueOnError)
	var listen, stats string
	fs.StringVar(&listen, "listen", "", "host:port to listen on over UDP and TCP, comma-separated: one UAS each")
	fs.StringVar(&stats, "stats", "", "statistics file (JSON), rewritten while the callees run")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errBadFlag, err)
	}
	if listen == "" || stats == "" {
		return fmt.Errorf("%w: uas needs -listen and -stats", errBadFlag)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	var uas []*sipload.UAS
	defer func() {
		for _, u := range uas {
			u.Close()
		}
	}()
	for _, addr := range strings.Split(listen, ",") {
		u, err := sipload.ListenUAS(sipload.UASConfig{Addr: addr})
		if err != nil {
			return err
		}
		uas = append(uas, u)
	}
	write := func(final bool) error {
		r := calleeReport{Final: final}
		for _, u := range uas {
			if final {
				r.Hosts = append(r.Hosts, u.Close())
			} else {
				r.Hosts = append(r.Hosts, u.Stats())
			}
		}
		return writeJSON(stats, r)
	}
	tick := time.NewTicker(statsEvery)
	defer tick.Stop()
	for {
		if err := write(false); err != nil {
			return err
		}
		select {
		case <-term:
			return write(true)
		case <-tick.C:
		}
	}
}

// writeJSON replaces path with v as JSON, whole or not at all.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// goCallees is the Go callees' process.
type goCallees struct {
	cmd   *exec.Cmd
	dir   string
	stats string
	out   strings.Builder
	done  chan struct{}
	err   error
}

// startGoCallees starts the Go callees on addrs, pinned to cpu (taskset
// -c; "" = unpinned), and waits until they listen.
func startGoCallees(addrs []string, cpu string) (*goCallees, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find sipbench's own binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "sipbench-uas-")
	if err != nil {
		return nil, fmt.Errorf("create callee dir: %w", err)
	}
	g := &goCallees{dir: dir, stats: filepath.Join(dir, "stats.json"), done: make(chan struct{})}
	args := []string{exe, "-listen", strings.Join(addrs, ","), "-stats", g.stats}
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	g.cmd = exec.Command(args[0], args[1:]...)
	g.cmd.Env = append(os.Environ(), uacEnv+"="+uasChildValue)
	g.cmd.Stdout, g.cmd.Stderr = &g.out, &g.out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the go callees: %w", err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.done)
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if g.exited() {
			break
		}
		if _, err := g.report(); err == nil {
			return g, nil
		}
	}
	_, _, _ = g.stop(nil, 0)
	return nil, fmt.Errorf("%w: the go callees on %v did not start: %w: %s", errExited, addrs, g.exitErr(), strings.TrimSpace(g.out.String()))
}

func (g *goCallees) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// exitErr is how the callees' process ended.
func (g *goCallees) exitErr() error {
	switch {
	case !g.exited():
		return errors.New("still running")
	case g.err == nil:
		return errors.New("exit status 0")
	}
	return g.err
}

// report reads the last statistics the callees wrote.
func (g *goCallees) report() (calleeReport, error) {
	var r calleeReport
	b, err := os.ReadFile(g.stats)
	if err != nil {
		return r, fmt.Errorf("go callees: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("go callees: %s: %w", g.stats, err)
	}
	return r, nil
}

// stop waits up to wait until every host took its want calls and has
// none up, then ends the callees and returns their last report and the
// CPU time their process used.
func (g *goCallees) stop(want []int, wait time.Duration) (calleeReport, time.Duration, error) {
	defer os.RemoveAll(g.dir)
	for deadline := time.Now().Add(wait); time.Now().Before(deadline) && !g.exited(); time.Sleep(statsEvery) {
		if r, err := g.report(); err == nil && r.settled(want) {
			break
		}
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	var cpu time.Duration
	if ps := g.cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	r, err := g.report()
	switch {
	case err != nil:
		return r, cpu, fmt.Errorf("%w: %s", err, strings.TrimSpace(g.out.String()))
	case !r.Final:
		return r, cpu, fmt.Errorf("%w: the go callees ended without their last report: %w: %s", errExited, g.exitErr(), strings.TrimSpace(g.out.String()))
	case len(r.Hosts) != len(want):
		return r, cpu, fmt.Errorf("%w: go callees report %d hosts, want %d", errExited, len(r.Hosts), len(want))
	}
	return r, cpu, nil
}

// settled reports whether each host took at least its want calls and
// has none up.
func (r calleeReport) settled(want []int) bool {
	if len(r.Hosts) != len(want) {
		return false
	}
	for i, h := range r.Hosts {
		if h.Calls < want[i] || h.Current > 0 {
			return false
		}
	}
	return true
}
