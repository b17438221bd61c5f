package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeBlock writes a /sys/class/block with one uevent per device.
func fakeBlock(t *testing.T, devs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, part := range devs {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ue := "MAJOR=254\nMINOR=1\nDEVNAME=" + name + "\nDEVTYPE=partition\n"
		if part != "" {
			ue += "PARTNAME=" + part + "\n"
		}
		if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(ue), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindByLabel(t *testing.T) {
	sys := fakeBlock(t, map[string]string{"vda": "", "vda1": "ESP", "vda2": "root-a", "vda3": "root-b", "vda4": "data"})
	if dev, err := findByLabel(sys, "data", 0); err != nil || dev != "/dev/vda4" {
		t.Errorf("findByLabel(data) = %q, %v; want /dev/vda4", dev, err)
	}
	if _, err := findByLabel(sys, "swap", 0); err == nil || !strings.Contains(err.Error(), `no partition labelled "swap"`) {
		t.Errorf("findByLabel(swap) = %v", err)
	}
	// Two disks with a data partition (a USB stick with an old image
	// plugged in): refuse rather than mount the wrong one.
	two := fakeBlock(t, map[string]string{"vda4": "data", "sdb4": "data"})
	if _, err := findByLabel(two, "data", 0); err == nil || !strings.Contains(err.Error(), "refusing to guess") {
		t.Errorf("findByLabel with two data partitions = %v", err)
	}
}

func TestFindByLabelWaitsForTheDevice(t *testing.T) {
	sys := fakeBlock(t, map[string]string{"vda1": "ESP"})
	go func() {
		time.Sleep(100 * time.Millisecond)
		d := filepath.Join(sys, "vda4")
		_ = os.MkdirAll(d, 0o755)
		_ = os.WriteFile(filepath.Join(d, "uevent"), []byte("DEVNAME=vda4\nPARTNAME=data\n"), 0o644)
	}()
	if dev, err := findByLabel(sys, "data", 5*time.Second); err != nil || dev != "/dev/vda4" {
		t.Errorf("findByLabel = %q, %v", dev, err)
	}
}

func TestCmdlineValue(t *testing.T) {
	line := "console=ttyS0 root=/dev/vda3 ro appliance.slot=b appliance.health_grace=20s panic=5\n"
	for key, want := range map[string]string{"appliance.slot": "b", "appliance.health_grace": "20s", "appliance": "", "quiet": ""} {
		if got := cmdlineValue(line, key); got != want {
			t.Errorf("cmdlineValue(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestOnTrial(t *testing.T) {
	dir := t.TempDir()
	if onTrial(dir) {
		t.Error("on trial without the EFI variable")
	}
	if err := os.WriteFile(filepath.Join(dir, bootCountVar), []byte{6, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if !onTrial(dir) {
		t.Error("not on trial with LoaderBootCountPath set")
	}
}

// TestRaiseFileLimit: from PID 1's 1024/4096 the limit goes to what
// nr_open says, soft and hard, so edged (exec'd by init) inherits it; a
// nr_open that does not read as a number is an error naming the file, and
// the limit stays.
func TestRaiseFileLimit(t *testing.T) {
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &saved) })
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1024, Max: 4096}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := raiseFileLimit(bad); !errors.Is(err, errNrOpen) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad nr_open: err %v, want one naming %s", err, bad)
	}
	want := uint64(65536)
	good := filepath.Join(dir, "nr_open")
	if !hasCap(t, unix.CAP_SYS_RESOURCE) {
		// Without the capability PID 1 has on the box the hard limit
		// cannot go up: a clear error, and up to the hard limit works.
		if err := os.WriteFile(good, []byte("65536\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := raiseFileLimit(good); err == nil || !strings.Contains(err.Error(), "65536") {
			t.Errorf("without CAP_SYS_RESOURCE: err %v, want one naming the limit", err)
		}
		want = 4096
	}
	if err := os.WriteFile(good, []byte(strconv.FormatUint(want, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := raiseFileLimit(good)
	if err != nil {
		t.Fatal(err)
	}
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if got != want || now.Cur != want || now.Max != want {
		t.Errorf("limit %d/%d (returned %d), want %d/%d", now.Cur, now.Max, got, want, want)
	}
}

// TestRaiseFileLimitInherited: edged is a child of init, and a Go
// program that starts with a soft limit below its hard one (PID 1's
// 1024/4096) raises its own soft limit at start and gives every child it
// starts the original limit back unless it set the limit itself through
// syscall's Setrlimit. So the test runs itself again from a shell that
// sets soft 1024 under this process's hard limit (the test may not raise
// a hard limit: no CAP_SYS_RESOURCE), with an nr_open at that hard limit,
// and there checks what a child sees after raiseFileLimit: the limit
// raised, not the 1024 the runtime would restore.
func TestRaiseFileLimitInherited(t *testing.T) {
	if os.Getenv("UMEDGE_TEST_NOFILE_CHILD") == "" {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		hard := min(lim.Max, 1<<20)
		if hard <= 1024 {
			t.Skipf("hard file limit %d leaves no room above a soft 1024", lim.Max)
		}
		cmd := exec.Command("/bin/sh", "-c", `ulimit -Hn "$1" && ulimit -Sn 1024 && exec "$0" -test.run='^TestRaiseFileLimitInherited$' -test.v`, //nolint:gosec // the test binary itself
			os.Args[0], strconv.FormatUint(hard, 10))
		cmd.Env = append(os.Environ(), "UMEDGE_TEST_NOFILE_CHILD="+strconv.FormatUint(hard, 10))
		out, err := cmd.CombinedOutput()
		if want := fmt.Sprintf("child sees %d/%d", hard, hard); err != nil || !strings.Contains(string(out), want) {
			t.Errorf("child run, want %q: %v\n%s", want, err, out)
		}
		return
	}
	n := os.Getenv("UMEDGE_TEST_NOFILE_CHILD")
	nrOpen := filepath.Join(t.TempDir(), "nr_open")
	if err := os.WriteFile(nrOpen, []byte(n+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := raiseFileLimit(nrOpen); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/sh", "-c", `echo "$(ulimit -Sn)/$(ulimit -Hn)"`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != n+"/"+n {
		t.Fatalf("a child of the raised process has %s, want %s/%s", got, n, n)
	}
	t.Logf("child sees %s", strings.TrimSpace(string(out)))
}

// hasCap reports whether this process has capability c in its effective set.
func hasCap(t *testing.T, c int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
