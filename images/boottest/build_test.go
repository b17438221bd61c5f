//go:build integration

package boottest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// artifacts are what one architecture's boot tests need, built once.
type artifacts struct {
	arch       string
	dir        string
	kernel     string
	bootloader string // "" when the host has none for this arch
	initramfs  string
	root       string // slot A's root, also the good update's
	badRoot    string // a root whose edged cannot run: it never becomes healthy
	image      string // pristine image; tests copy it
	mkimage    string
	fw         string
	buildTime  time.Duration
}

// The tests boot the shipped init and config: what `make image` puts
// on the box, with one change (testConfig).
const initPkg = "./appliance/cmd/init"

// ntpLine is the shipped config's NTP setting. The test images have none:
// slirp passes the guest's traffic on to the host's network, and tests
// send nothing beyond loopback.
const ntpLine = `ntp_servers = ["pool.ntp.org"]`

// testConfig writes the shipped config without NTP servers to dir.
func testConfig(dir string) (string, error) {
	data, err := os.ReadFile(shippedConfig)
	if err != nil {
		return "", err
	}
	if !bytes.Contains(data, []byte(ntpLine)) {
		return "", fmt.Errorf("%s has no line %s to turn NTP off with; update boottest", shippedConfig, ntpLine)
	}
	out := filepath.Join(dir, "umedge.toml")
	return out, os.WriteFile(out, bytes.Replace(data, []byte(ntpLine), []byte("ntp_servers = []"), 1), 0o600)
}

// healthGrace is the kernel command line's appliance.health_grace of the
// test images: how long a slot on trial has to become healthy before the
// init reboots it. The product's default (90 s) is for real hardware; a
// good slot passes within ~10 s under TCG, a third of this on a loaded
// host, and the rollback test waits this long for the bad one.
const healthGrace = "45s"

var (
	buildMu       sync.Mutex
	built         = map[string]*artifacts{}
	buildErrs     = map[string]error{}
	toolsOnce     sync.Once
	toolsDir      string
	errTools      error
	repoRoot      = mustAbs("../..")
	devKey        = filepath.Join(repoRoot, "firmware/keys/dev/dev-ed25519.key")
	devTrust      = filepath.Join(repoRoot, "firmware/keys/dev")
	shippedConfig = filepath.Join(repoRoot, "configs/appliance.toml")
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

var systemdBoot = map[string][]string{
	"amd64": {"/usr/lib/systemd/boot/efi/systemd-bootx64.efi"},
	// make efi-arm64 puts it there (Debian's arm64 package, multiarch).
	"arm64": {filepath.Join(repoRoot, "bin/efi/arm64/systemd-bootaa64.efi"), "/usr/lib/systemd/boot/efi/systemd-bootaa64.efi"},
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func output(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// hostTools builds mkimage and umedge-fw for the host once.
func hostTools(t *testing.T) string {
	t.Helper()
	toolsOnce.Do(func() {
		toolsDir, errTools = os.MkdirTemp("", "umedge-boottools")
		if errTools != nil {
			return
		}
		for _, p := range []string{"./images/cmd/mkimage", "./firmware/cmd/umedge-fw"} {
			if errTools = run(repoRoot, nil, "go", "build", "-o", toolsDir+"/", p); errTools != nil {
				return
			}
		}
	})
	if errTools != nil {
		t.Fatal(errTools)
	}
	return toolsDir
}

// build returns arch's artifacts, building them the first time.
func build(t *testing.T, arch string) *artifacts {
	t.Helper()
	tools := hostTools(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	if a, ok := built[arch]; ok {
		return a
	}
	if err, ok := buildErrs[arch]; ok {
		t.Fatal(err)
	}
	a, err := buildArch(tools, arch)
	if err != nil {
		buildErrs[arch] = err
		t.Fatal(err)
	}
	built[arch] = a
	t.Logf("%s artifacts built in %.1fs", arch, a.buildTime.Seconds())
	return a
}

// kernelOf returns the kernel the images of arch boot: images/kernel's
// committed build, checked against its sha256.
func kernelOf(arch string) (string, error) {
	k := filepath.Join(repoRoot, "images/kernel", arch, "vmlinuz")
	if err := run(filepath.Dir(k), nil, "sha256sum", "-c", "--quiet", "vmlinuz.sha256"); err != nil {
		return "", fmt.Errorf("the committed %s kernel does not match its sha256 (make kernel ARCH=%s): %w", arch, arch, err)
	}
	return k, nil
}

func buildArch(tools, arch string) (*artifacts, error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "umedge-boot-"+arch)
	if err != nil {
		return nil, err
	}
	a := &artifacts{arch: arch, dir: dir, mkimage: tools + "/mkimage", fw: tools + "/umedge-fw"}
	if a.kernel, err = kernelOf(arch); err != nil {
		return nil, err
	}
	for _, p := range systemdBoot[arch] {
		if _, err := os.Stat(p); err == nil {
			a.bootloader = p
			break
		}
	}

	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch}
	plugins := filepath.Join(dir, "plugins")
	for _, b := range []struct{ out, pkg string }{
		{dir + "/init", initPkg},
		{dir + "/edged", "./core/cmd/edged"},
		{plugins + "/umedge-plugin-umrouter", "./plugins/umrouter"},
	} {
		if err := run(repoRoot, env, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, b.pkg); err != nil {
			return nil, err
		}
	}
	if err := pinPlugins(plugins, filepath.Join(dir, "plugins.sha256")); err != nil {
		return nil, err
	}

	bootConfig, err := testConfig(dir)
	if err != nil {
		return nil, err
	}
	common := []string{"-arch", arch, "-init", dir + "/init", "-plugins", plugins, "-trust", devTrust, "-config", bootConfig}
	a.root, a.badRoot = dir+"/root.squashfs", dir+"/bad-root.squashfs"
	a.initramfs = dir + "/initramfs.cpio.lz4"
	args := append(common, "-edged", dir+"/edged", "-root-out", a.root, "-initramfs", a.initramfs)
	if a.bootloader != "" {
		a.image = dir + "/umedge.img"
		args = append(args, "-kernel", a.kernel, "-bootloader", a.bootloader, "-out", a.image,
			"-kernel-args", "appliance.health_grace="+healthGrace)
	}
	if err := run(repoRoot, nil, a.mkimage, args...); err != nil {
		return nil, err
	}
	// The bad update: a broken build whose edged was cut short. It is
	// signed like any other, installs, and boots; edged exits at once
	// every time the supervisor starts it, so the slot never passes its
	// health check and is never blessed.
	bad := dir + "/edged-truncated"
	if err := truncatedCopy(dir+"/edged", bad, 64<<10); err != nil {
		return nil, err
	}
	if err := run(repoRoot, nil, a.mkimage, append(common, "-edged", bad, "-root-out", a.badRoot)...); err != nil {
		return nil, err
	}
	a.buildTime = time.Since(start)
	return a, nil
}

// truncatedCopy writes the first n bytes of src to dst, executable.
func truncatedCopy(src, dst string, n int64) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data[:min(n, int64(len(data)))], 0o755) //nolint:gosec // an executable for the image
}

func pinPlugins(dir, out string) error {
	files, err := filepath.Glob(filepath.Join(dir, "umedge-plugin-*"))
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), filepath.Base(f))
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// bundle signs a bundle of root and the kernel with the dev key.
func (a *artifacts) bundle(t *testing.T, root string, version int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.bundle", version))
	err := run(repoRoot, nil, a.fw, "create", "-key", devKey, "-compatible", "umedge-"+a.arch+"-v1",
		"-version", fmt.Sprint(version), "-release", fmt.Sprintf("test-v%d", version),
		"-kernel", a.kernel, "-root", root, "-out", out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
