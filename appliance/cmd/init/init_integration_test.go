//go:build integration

package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// console collects the init's console lines for the test to wait on.
type console struct {
	mu    sync.Mutex
	lines []string
}

func (c *console) add(l string) {
	c.mu.Lock()
	c.lines = append(c.lines, l)
	c.mu.Unlock()
}

func (c *console) count(substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// waitLine waits until substr has been printed n times.
func (c *console) waitLine(t *testing.T, substr string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.count(substr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (x%d) on the console within %v:\n%s", substr, n, within, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func build(t *testing.T, root, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// replaceOnce replaces old in text, which must hold it exactly once.
func replaceOnce(t *testing.T, text, old, new string) string {
	t.Helper()
	if n := strings.Count(text, old); n != 1 {
		t.Fatalf("configs/appliance.toml has %q %d times, want once: the test must follow the shipped file", old, n)
	}
	return strings.Replace(text, old, new, 1)
}

// children lists the PIDs of pid's children, whichever of its threads
// started them.
func children(t *testing.T, pid int) []int {
	t.Helper()
	files, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	if err != nil || len(files) == 0 {
		t.Fatalf("children of %d: %v", pid, err)
	}
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(field)
			out = append(out, n)
		}
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// TestInitAsPID1 boots the init as PID 1 of new PID, mount, network and
// UTS namespaces with the shipped configs/appliance.toml (only the paths
// of the image, the watchdog and NTP changed), a real edged and the real
// umrouter plugin. It checks the first boot (data layout, config copy,
// device certificate, log file), the firewall and READY lines, the
// firewall in the namespace, a refused broken config, a reload that moves
// the SIP port, a restart of edged after it is killed, and the shutdown.
func TestInitAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the init runs as PID 1 of namespaces of its own")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) not found")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := strings.TrimSpace(string(out))
	// Not under /tmp: the init mounts a tmpfs there.
	work, err := os.MkdirTemp("/var/tmp", "umedge-init-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	for _, d := range []string{"bin", "plugins", "etc", "data", "run", "efivars"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build(t, root, filepath.Join(work, "bin", "init"), "./appliance/cmd/init")
	build(t, root, filepath.Join(work, "bin", "edged"), "./core/cmd/edged")
	plugin := filepath.Join(work, "plugins", "umedge-plugin-umrouter")
	build(t, root, plugin, "./plugins/umrouter")
	pb, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pb)
	pins := filepath.Join(work, "plugins.sha256")
	if err := os.WriteFile(pins, []byte(hex.EncodeToString(sum[:])+"  umedge-plugin-umrouter\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	shipped, err := os.ReadFile(filepath.Join(root, "configs", "appliance.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(shipped)
	text = replaceOnce(t, text, `"/usr/lib/umedge/plugins"`, strconv.Quote(filepath.Join(work, "plugins")))
	text = replaceOnce(t, text, `"/usr/lib/umedge/plugins.sha256"`, strconv.Quote(pins))
	text = replaceOnce(t, text, `watchdog = "/dev/watchdog"`, `watchdog = ""`) // never arm the host's watchdog
	text = replaceOnce(t, text, `ntp_servers = ["pool.ntp.org"]`, `ntp_servers = []`)
	defaultConfig := filepath.Join(work, "etc", "umedge.toml")
	if err := os.WriteFile(defaultConfig, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(work, "cmdline")
	if err := os.WriteFile(cmdline, []byte("console=ttyS0 ro appliance.slot=a\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(work, "data")
	cmd := exec.Command("unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--propagation", "private",
		filepath.Join(work, "bin", "init"),
		"-console", "", "-data", data, "-data-label", "", "-esp-label", "",
		"-default-config", defaultConfig, "-config-link", filepath.Join(work, "run", "umedge.toml"),
		"-edged", filepath.Join(work, "bin", "edged"), "-resolv-conf", filepath.Join(work, "run", "resolv.conf"),
		"-cmdline", cmdline, "-efivars", filepath.Join(work, "efivars"), "-health-grace", "60s")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	con := &console{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			con.add(sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // unshare; with it goes the namespace's init and all in it
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("console:\n%s", con)
		}
	})

	con.waitLine(t, "UMEDGE FIREWALL loaded rules=", 1, 30*time.Second)
	con.waitLine(t, "UMEDGE READY slot=a", 1, 60*time.Second)

	// First boot laid out the data partition.
	if b, err := os.ReadFile(filepath.Join(data, "umedge.toml")); err != nil || string(b) != text {
		t.Errorf("data/umedge.toml is not the shipped config (%v)", err)
	}
	for _, f := range []string{"tls/device.pem", "tls/device-key.pem", "log/umedge.log"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("first boot: %v", err)
		}
	}
	logText, _ := os.ReadFile(filepath.Join(data, "log", "umedge.log"))
	for _, want := range []string{"UMEDGE BOOT slot=a", "UMEDGE READY slot=a", "edged started"} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("log/umedge.log lacks %q", want)
		}
	}

	kids := children(t, cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("unshare has children %v, want the init", kids)
	}
	initPID := kids[0]
	nft := func() string {
		b, err := exec.Command("nsenter", "-t", strconv.Itoa(initPID), "-n", "nft", "list", "table", "inet", "umedge").CombinedOutput()
		if err != nil {
			t.Fatalf("nft in the init's namespace: %v\n%s", err, b)
		}
		return string(b)
	}
	if rules := nft(); !strings.Contains(rules, "udp dport 5060 accept") || !strings.Contains(rules, "policy drop") {
		t.Errorf("the namespace's firewall:\n%s", rules)
	}

	// A broken file is refused with its key; the running config stays.
	mine := filepath.Join(data, "umedge.toml")
	if err := os.WriteFile(mine, []byte(strings.Replace(text, "tcp_port = 5060", "tcp_port = 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE CONFIG refused", 1, 10*time.Second)
	if con.count("UMEDGE CONFIG ERROR") == 0 || !strings.Contains(con.String(), "sip.tcp_port") {
		t.Errorf("the refusal does not name sip.tcp_port")
	}

	// A good change is applied: the firewall follows, edged too (its
	// health check, now on 5070, keeps passing).
	moved := strings.Replace(text, "tcp_port = 5060", "tcp_port = 5070", 1)
	if err := os.WriteFile(mine, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE FIREWALL loaded rules=", 2, 10*time.Second)
	if rules := nft(); !strings.Contains(rules, "udp dport 5070 accept") || strings.Contains(rules, "dport 5060") {
		t.Errorf("after the reload the firewall is:\n%s", rules)
	}
	time.Sleep(3 * time.Second)
	if n := con.count(`msg="health check"`); n != 0 {
		t.Errorf("%d failed health checks after the reload", n)
	}

	// edged dies: the supervisor starts it again.
	var edged int
	for _, k := range children(t, initPID) {
		if comm(k) == "edged" {
			edged = k
		}
	}
	if edged == 0 {
		t.Fatalf("no edged among the init's children %v", children(t, initPID))
	}
	if err := syscall.Kill(edged, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "killed by killed", 1, 10*time.Second)
	con.waitLine(t, "edged started", 2, 20*time.Second)

	// SIGTERM: an orderly shutdown, then the namespace's init is gone.
	if err := syscall.Kill(initPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE SHUTDOWN", 1, 10*time.Second)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the init did not end after SIGTERM")
	}
}
