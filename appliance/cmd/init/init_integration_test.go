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

	"github.com/umedge/umedge/appliance/internal/apptest"
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

// rig is what a boot of the init needs: binaries built once, the shipped
// config adapted to them, and a work directory outside /tmp (the init
// mounts a tmpfs there).
type rig struct {
	work, defaultConfig, text string
}

var rigOnce struct {
	sync.Once
	r   *rig
	err string
}

// TestMain removes the rig's work directory after all tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if rigOnce.r != nil {
		os.RemoveAll(rigOnce.r.work)
	}
	os.Exit(code)
}

func setup(t *testing.T) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the init runs as PID 1 of namespaces of its own")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) not found")
	}
	rigOnce.Do(func() { rigOnce.r, rigOnce.err = makeRig(t) })
	if rigOnce.r == nil {
		t.Fatal(rigOnce.err)
	}
	return rigOnce.r
}

func makeRig(t *testing.T) (*rig, string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return nil, err.Error()
	}
	root := strings.TrimSpace(string(out))
	work, err := os.MkdirTemp("/var/tmp", "umedge-init-test-")
	if err != nil {
		return nil, err.Error()
	}
	for _, d := range []string{"bin", "plugins", "etc"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return nil, err.Error()
		}
	}
	build(t, root, filepath.Join(work, "bin", "init"), "./appliance/cmd/init")
	build(t, root, filepath.Join(work, "bin", "edged"), "./core/cmd/edged")
	plugin := filepath.Join(work, "plugins", "umedge-plugin-umrouter")
	build(t, root, plugin, "./plugins/umrouter")
	pb, err := os.ReadFile(plugin)
	if err != nil {
		return nil, err.Error()
	}
	sum := sha256.Sum256(pb)
	pins := filepath.Join(work, "plugins.sha256")
	if err := os.WriteFile(pins, []byte(hex.EncodeToString(sum[:])+"  umedge-plugin-umrouter\n"), 0o644); err != nil {
		return nil, err.Error()
	}
	shipped, err := os.ReadFile(filepath.Join(root, "configs", "appliance.toml"))
	if err != nil {
		return nil, err.Error()
	}
	text := string(shipped)
	text = replaceOnce(t, text, `"/usr/lib/umedge/plugins"`, strconv.Quote(filepath.Join(work, "plugins")))
	text = replaceOnce(t, text, `"/usr/lib/umedge/plugins.sha256"`, strconv.Quote(pins))
	text = replaceOnce(t, text, `watchdog = "/dev/watchdog"`, `watchdog = ""`) // never arm the host's watchdog
	text = replaceOnce(t, text, `ntp_servers = ["pool.ntp.org"]`, `ntp_servers = []`)
	def := filepath.Join(work, "etc", "umedge.toml")
	if err := os.WriteFile(def, []byte(text), 0o644); err != nil {
		return nil, err.Error()
	}
	return &rig{work: work, defaultConfig: def, text: text}, ""
}

// booted is one running init.
type booted struct {
	con     *console
	data    string
	initPID int
	exited  chan error
}

// boot starts the init as PID 1 of new PID, mount, network and UTS
// namespaces; dataLabel "" uses a plain directory as the data partition.
func (r *rig) boot(t *testing.T, name, dataLabel string, prepare func(data string)) *booted {
	t.Helper()
	dir, err := os.MkdirTemp(r.work, name+"-") // each boot its own, even with -count
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, filepath.Join(dir, "run"), filepath.Join(dir, "efivars")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if prepare != nil {
		prepare(data)
	}
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("console=ttyS0 ro appliance.slot=a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// --kill-child: should the test die, the namespace's init dies too,
	// and with it every process in the namespace.
	cmd := exec.Command("unshare", "--fork", "--kill-child=SIGKILL", "--pid", "--mount", "--net", "--uts", "--propagation", "private",
		filepath.Join(r.work, "bin", "init"),
		"-console", "", "-data", data, "-data-label", dataLabel, "-esp-label", "",
		"-default-config", r.defaultConfig, "-config-link", filepath.Join(dir, "run", "umedge.toml"),
		"-edged", filepath.Join(r.work, "bin", "edged"), "-resolv-conf", filepath.Join(dir, "run", "resolv.conf"),
		"-cmdline", cmdline, "-efivars", filepath.Join(dir, "efivars"), "-health-grace", "60s")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	b := &booted{con: &console{}, data: data, exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			b.con.add(sc.Text())
		}
	}()
	go func() { <-scanned; b.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if b.initPID > 0 {
			_ = syscall.Kill(b.initPID, syscall.SIGKILL) // PID 1 of the namespace: all in it go with it
		}
		_ = cmd.Process.Kill()
		select {
		case <-b.exited:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("console of %s:\n%s", name, b.con)
		}
	})
	b.con.waitLine(t, "UMEDGE BOOT", 1, 10*time.Second)
	kids := children(t, cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("unshare has children %v, want the init", kids)
	}
	b.initPID = kids[0]
	return b
}

func (b *booted) nft(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(b.initPID), "-n", "nft", "list", "table", "inet", "umedge").CombinedOutput()
	if err != nil {
		t.Fatalf("nft in the init's namespace: %v\n%s", err, out)
	}
	return string(out)
}

// TestInitAsPID1 boots the init with the shipped configs/appliance.toml
// (only the image's paths, the watchdog and NTP changed), a real edged and
// the real umrouter plugin. It checks the first boot (data layout, config
// copy, device certificate, log file), the firewall and READY lines, the
// firewall in the namespace, a refused broken config, a reload that moves
// the SIP port, a restart of edged after it is killed, and the shutdown.
func TestInitAsPID1(t *testing.T) {
	r := setup(t)
	b := r.boot(t, "first-boot", "", nil)
	con, data := b.con, b.data

	con.waitLine(t, "UMEDGE FIREWALL loaded rules=", 1, 30*time.Second)
	con.waitLine(t, "UMEDGE READY slot=a", 1, 60*time.Second)

	// First boot laid out the data partition.
	if got, err := os.ReadFile(filepath.Join(data, "umedge.toml")); err != nil || string(got) != r.text {
		t.Errorf("data/umedge.toml is not the shipped config (%v)", err)
	}
	for _, f := range []string{"tls/device.pem", "tls/device-key.pem", "log/umedge.log"} {
		// The key is made beside the boot, not before READY.
		apptest.WaitFor(t, func() bool { _, err := os.Stat(filepath.Join(data, f)); return err == nil }, "first boot: "+f)
	}
	// A line reaches the console first and the log file right after (one
	// MultiWriter): the console's READY does not mean the file has it yet.
	for _, want := range []string{"UMEDGE BOOT slot=a", "UMEDGE READY slot=a", "edged started"} {
		apptest.WaitFor(t, func() bool {
			logText, _ := os.ReadFile(filepath.Join(data, "log", "umedge.log"))
			return strings.Contains(string(logText), want)
		}, "log/umedge.log to hold "+want)
	}
	if rules := b.nft(t); !strings.Contains(rules, "udp dport 5060 accept") || !strings.Contains(rules, "policy drop") {
		t.Errorf("the namespace's firewall:\n%s", rules)
	}

	// A broken file is refused with its key; the running config stays.
	mine := filepath.Join(data, "umedge.toml")
	if err := os.WriteFile(mine, []byte(strings.Replace(r.text, "tcp_port = 5060", "tcp_port = 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE CONFIG refused", 1, 10*time.Second)
	if con.count("UMEDGE CONFIG ERROR") == 0 || !strings.Contains(con.String(), "sip.tcp_port") {
		t.Errorf("the refusal does not name sip.tcp_port")
	}

	// A good change is applied: the firewall follows, edged too (its
	// health check, now on 5070, keeps passing).
	failed := con.count(`msg="health check"`) // edged's start may have been probed too early
	if err := os.WriteFile(mine, []byte(strings.Replace(r.text, "tcp_port = 5060", "tcp_port = 5070", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE FIREWALL loaded rules=", 2, 10*time.Second)
	if rules := b.nft(t); !strings.Contains(rules, "udp dport 5070 accept") || strings.Contains(rules, "dport 5060") {
		t.Errorf("after the reload the firewall is:\n%s", rules)
	}
	time.Sleep(4 * time.Second)
	if n := con.count(`msg="health check"`) - failed; n != 0 {
		t.Errorf("%d failed health checks after the reload", n)
	}

	// Plugin settings the router plugin refuses: the init's own check
	// cannot see them, edged's config check can; refused, nothing changes.
	badPlugin := strings.Replace(r.text, `dial_plan = "site"`, `dial_plan = "nowhere"`, 1)
	if err := os.WriteFile(mine, []byte(strings.Replace(badPlugin, "tcp_port = 5060", "tcp_port = 5090", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE CONFIG refused", 2, 30*time.Second)
	if !strings.Contains(con.String(), "plugins.umrouter.settings.hunt_groups.pbx-all.dial_plan") {
		t.Error("the refusal does not name the plugin setting")
	}
	if rules := b.nft(t); !strings.Contains(rules, "udp dport 5070 accept") {
		t.Errorf("a refused file changed the firewall:\n%s", rules)
	}

	// A change edged takes only at start (log.format): the init restarts
	// it, and the health check passes on the new port.
	restart := strings.Replace(strings.Replace(r.text, `format = "text"`, `format = "json"`, 1), "tcp_port = 5060", "tcp_port = 5080", 1)
	if err := os.WriteFile(mine, []byte(restart), 0o644); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE EDGED restarting to apply the new config", 1, 20*time.Second)
	con.waitLine(t, "edged started", 2, 20*time.Second)
	if rules := b.nft(t); !strings.Contains(rules, "udp dport 5080 accept") {
		t.Errorf("the firewall after the restart:\n%s", rules)
	}
	failures := con.count(`msg="health check"`)
	time.Sleep(4 * time.Second)
	if n := con.count(`msg="health check"`); n != failures {
		t.Errorf("health checks still fail after the restart")
	}

	// edged dies: the supervisor starts it again.
	var edged int
	for _, k := range children(t, b.initPID) {
		if comm(k) == "edged" {
			edged = k
		}
	}
	if edged == 0 {
		t.Fatalf("no edged among the init's children %v", children(t, b.initPID))
	}
	if err := syscall.Kill(edged, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "killed by killed", 1, 10*time.Second)
	con.waitLine(t, "edged started", 3, 20*time.Second)

	// SIGTERM: an orderly shutdown, then the namespace's init is gone.
	if err := syscall.Kill(b.initPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	con.waitLine(t, "UMEDGE SHUTDOWN", 1, 10*time.Second)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the init did not end after SIGTERM")
	}
	if con.count("did not stop in time") != 0 {
		t.Error("edged had to be killed at shutdown; SIGTERM should stop it")
	}
}

// TestInitFallsBack: with a corrupt config on the data partition, and
// with no data partition at all, the box still comes up on the shipped
// config, healthy (so its admin API answers /healthz), and the console
// says why.
func TestInitFallsBack(t *testing.T) {
	r := setup(t)
	t.Run("corrupt config", func(t *testing.T) {
		b := r.boot(t, "corrupt-config", "", func(data string) {
			if err := os.WriteFile(filepath.Join(data, "umedge.toml"), []byte("[sip\x00\xff garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		b.con.waitLine(t, "UMEDGE CONFIG ERROR", 1, 20*time.Second)
		b.con.waitLine(t, "UMEDGE CONFIG using "+r.defaultConfig, 1, 20*time.Second)
		b.con.waitLine(t, "UMEDGE READY slot=a", 1, 60*time.Second)
		if got, _ := os.ReadFile(filepath.Join(b.data, "umedge.toml")); !strings.Contains(string(got), "garbage") {
			t.Error("the operator's broken file was overwritten; it must stay for them to fix")
		}
	})
	t.Run("no data partition", func(t *testing.T) {
		b := r.boot(t, "no-data", "umedge-test-no-such-label", nil)
		b.con.waitLine(t, "UMEDGE DATA ERROR", 1, 20*time.Second)
		b.con.waitLine(t, "running on a RAM disk", 1, 20*time.Second)
		b.con.waitLine(t, "UMEDGE READY slot=a", 1, 60*time.Second)
		// The RAM disk lives in the init's mount namespace only.
		if entries, _ := os.ReadDir(b.data); len(entries) != 0 {
			t.Errorf("the data directory outside the namespace holds %d entries, want none", len(entries))
		}
	})
}

// TestShippedConfigChecks: configs/appliance.toml, with the image's paths
// pointed at the test's binaries, passes `edged config check`, plugin
// settings included: the image ships it as /etc/umedge/umedge.toml.
func TestShippedConfigChecks(t *testing.T) {
	r := setup(t)
	out, err := exec.Command(filepath.Join(r.work, "bin", "edged"), "config", "check", r.defaultConfig).CombinedOutput()
	if err != nil {
		t.Fatalf("edged config check of the shipped appliance config: %v\n%s", err, out)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(out)), ": ok") {
		t.Errorf("edged config check said %q", out)
	}
}
