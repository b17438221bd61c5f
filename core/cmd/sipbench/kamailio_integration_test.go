//go:build integration

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testKamailio(t *testing.T) kamailioServer {
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		t.Fatalf("kamailio not installed (apt-get install kamailio): %v", err)
	}
	mods, err := findKamailioModules()
	if err != nil {
		t.Fatalf("findKamailioModules() = %v", err)
	}
	return kamailioServer{bin: bin, cfg: kamailioConfig{Children: 2, TCPChildren: 2, UDPBuffer: udpBuffer, ModuleDir: mods}}
}

// Kamailio's own syntax check accepts the generated config.
func TestKamailioConfigChecks(t *testing.T) {
	k := testKamailio(t)
	dir := t.TempDir()
	args, _, err := k.command(dir, 5090, workload{})
	if err != nil {
		t.Fatalf("command() = %v", err)
	}
	out, err := exec.Command(k.bin, "-c", "-f", filepath.Join(dir, "kamailio.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("kamailio -c: %v\n%s\n(args %v)", err, out, args)
	}
}

// One short step against Kamailio: every call gets the expected 302, the
// memory is read, and no Kamailio process is left once the step is over.
func TestMeasureKamailio(t *testing.T) {
	k := testKamailio(t)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			o := options{duration: time.Second, recvTimeout: 2 * time.Second, loss: 0.001}
			s, err := measure(context.Background(), o, k, scenarioSingle, tp, 200)
			if err != nil {
				t.Fatalf("measure() = %v", err)
			}
			t.Logf("%s", s)
			if !s.Pass || s.Successful != 200 {
				t.Errorf("step %s, want 200 successful calls", s)
			}
			if s.Mem.Procs < 2 || s.Mem.MaxKiB == 0 || s.Mem.SumKiB < s.Mem.MaxKiB {
				t.Errorf("memory %+v, want Kamailio's process tree", s.Mem)
			}
			procs.Lock()
			left := len(procs.m)
			procs.Unlock()
			if left != 0 {
				t.Errorf("%d servers still tracked after the step", left)
			}
		})
	}
}

// stop ends the whole process group, workers included.
func TestStopKillsTheGroup(t *testing.T) {
	k := testKamailio(t)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startServer(k, "", dir, port, workload{})
	if err != nil {
		t.Fatalf("startServer() = %v", err)
	}
	pids, err := descendants("/proc", p.cmd.Process.Pid)
	if err != nil || len(pids) == 0 {
		t.Fatalf("descendants() = %v, %v; want Kamailio's workers", pids, err)
	}
	p.stop()
	time.Sleep(100 * time.Millisecond)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); len(b) > 0 && !isZombie(b) {
				t.Errorf("worker %d still running after stop", pid)
			}
		}
	}
}

// isZombie reports whether a /proc/PID/stat content is of a zombie.
func isZombie(stat []byte) bool {
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}
