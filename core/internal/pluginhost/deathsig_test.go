//go:build linux

package pluginhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childHostEnv makes the test binary a plugin host of its own (see
// TestMain): it starts the test plugin from the directory the variable
// names, prints the plugin's pid and waits to be killed.
const childHostEnv = "PLUGINHOST_TEST_CHILD_DIR"

func runChildHost(dir string) int {
	h := New(Config{Dir: dir})
	spec := testSpec("r", `pool = "a"`)
	spec.SHA256 = os.Getenv("PLUGINHOST_TEST_CHILD_SUM")
	if err := h.Start(context.Background(), []Spec{spec}); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	sts := h.Status()
	if len(sts) != 1 || sts[0].PID == 0 {
		fmt.Fprintf(os.Stderr, "no pid for plugin r in %+v\n", sts)
		return 1
	}
	fmt.Printf("plugin-pid %d\n", sts[0].PID)
	time.Sleep(time.Minute)
	return 0
}

// TestPluginDiesWithHost: edged killed with SIGKILL (no chance to stop its
// plugins) must not leave a plugin process behind.
func TestPluginDiesWithHost(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, testBinary, filepath.Join(dir, testBinaryName), nil)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(self, "-test.run=^$")
	host.Env = append(os.Environ(), childHostEnv+"="+dir, "PLUGINHOST_TEST_CHILD_SUM="+testSum)
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "plugin-pid" {
			if pid, err = strconv.Atoi(f[1]); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if pid == 0 {
		t.Fatal("the child host printed no plugin pid")
	}
	if !running(pid) {
		t.Fatalf("plugin %d is not running before the host is killed", pid)
	}
	// Reaped or not, a plugin whose host died must be gone: the test
	// process is not its parent, so a killed plugin may stay a zombie
	// until the reaper of this namespace takes it.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still runs 5 s after its host was SIGKILLed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running reports whether pid is a process that has not exited (a zombie has).
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
