package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree writes files (path → content) under a temp dir.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The 802.1Q stack as Debian 6.1 has it: modules.dep as Depmod writes it
// (direct dependencies only) and as depmod(8) does (all, deepest last).
const dep8021q = `kernel/net/8021q/8021q.ko: kernel/net/802/mrp.ko kernel/net/802/garp.ko
kernel/net/802/garp.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/802/mrp.ko:
kernel/net/llc/llc.ko:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko
kernel/fs/squashfs/squashfs.ko.xz:
`

const aliasFile = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000004v* virtio_rng
alias rtnl-link-vlan 8021q
alias fs-squashfs squashfs
`

// recorder is a Set whose Insert notes the files instead of loading them.
func recorder(t *testing.T, dir string) (*Set, *[]string) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s.Insert = func(f string) error { got = append(got, f); return nil }
	return s, &got
}

// TestLoadDependenciesFirst: 8021q's dependencies are inserted before it,
// each once, llc before stp before garp, whatever order modules.dep
// lists them in; an alias loads its module; an already loaded module
// (EEXIST) is fine.
func TestLoadDependenciesFirst(t *testing.T) {
	for name, dep := range map[string]string{
		"direct":       dep8021q,
		"depmod-style": strings.Replace(dep8021q, "8021q.ko: kernel/net/802/mrp.ko kernel/net/802/garp.ko", "8021q.ko: kernel/net/802/garp.ko kernel/net/802/mrp.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko", 1),
		"by alias":     dep8021q,
	} {
		t.Run(name, func(t *testing.T) {
			s, got := recorder(t, tree(t, map[string]string{"modules.dep": dep, "modules.alias": aliasFile}))
			target := "8021q"
			if name == "by alias" {
				target = "rtnl-link-vlan"
			}
			if err := s.Load(target, "8021q"); err != nil {
				t.Fatal(err)
			}
			before := func(a, b string) bool {
				return slices.Index(*got, a) >= 0 && slices.Index(*got, a) < slices.Index(*got, b)
			}
			for _, pair := range [][2]string{
				{"kernel/net/llc/llc.ko", "kernel/net/802/stp.ko"},
				{"kernel/net/802/stp.ko", "kernel/net/802/garp.ko"},
				{"kernel/net/802/garp.ko", "kernel/net/8021q/8021q.ko"},
				{"kernel/net/802/mrp.ko", "kernel/net/8021q/8021q.ko"},
			} {
				if !before(pair[0], pair[1]) {
					t.Errorf("inserted %v: want %s before %s", *got, pair[0], pair[1])
				}
			}
			if len(*got) != 5 {
				t.Errorf("inserted %v, want each of the 5 once", *got)
			}
		})
	}
	s, _ := recorder(t, tree(t, map[string]string{"modules.dep": dep8021q}))
	s.Insert = func(string) error { return unix.EEXIST }
	if err := s.Load("8021q"); err != nil {
		t.Errorf("Load of loaded modules = %v, want nil", err)
	}
	s, _ = recorder(t, tree(t, map[string]string{"modules.dep": dep8021q}))
	s.Insert = func(f string) error {
		if strings.Contains(f, "garp") {
			return unix.ENOEXEC
		}
		return nil
	}
	if err := s.Load("8021q"); !errors.Is(err, unix.ENOEXEC) || !strings.Contains(err.Error(), "load garp") {
		t.Errorf("Load with garp failing = %v, want it named", err)
	}
}

// TestUnknownAndBroken: a missing module or dependency, a cycle and a
// malformed file are errors naming what is wrong; no module directory
// is ErrNoModules.
func TestUnknownAndBroken(t *testing.T) {
	s, got := recorder(t, tree(t, map[string]string{"modules.dep": "a.ko: b.ko\nc.ko: d.ko\nd.ko: c.ko\n"}))
	if err := s.Load("zz"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "zz") {
		t.Errorf("Load(zz) = %v", err)
	}
	if err := s.Load("a"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "b (needed by a)") {
		t.Errorf("Load(a) = %v, want b named as a's missing dependency", err)
	}
	if err := s.Load("c"); !errors.Is(err, errCycle) {
		t.Errorf("Load(c) = %v, want a cycle", err)
	}
	if len(*got) != 0 {
		t.Errorf("inserted %v although every load failed its check", *got)
	}
	if _, err := Open(tree(t, map[string]string{"modules.dep": "no colon here\n"})); err == nil || !strings.Contains(err.Error(), "modules.dep:1") {
		t.Errorf("Open of a bad modules.dep = %v", err)
	}
	if _, err := Open(tree(t, map[string]string{"modules.dep": "", "modules.alias": "alias x\n"})); err == nil || !strings.Contains(err.Error(), "modules.alias:1") {
		t.Errorf("Open of a bad modules.alias = %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "6.1.0-gone")); !errors.Is(err, ErrNoModules) {
		t.Errorf("Open of no directory = %v, want ErrNoModules", err)
	}
}

// TestNames: Name strips directories and any suffix and has dashes as
// underscores; Lookup finds modules by alias, none for an unclaimed one.
func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/squashfs/squashfs.ko.xz": "squashfs", "virtio-rng.ko": "virtio_rng", "8021q": "8021q", "a/b/nf_tables.ko.zst": "nf_tables",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
	s, _ := recorder(t, tree(t, map[string]string{"modules.dep": dep8021q, "modules.alias": aliasFile}))
	if got := s.Lookup("fs-squashfs"); !slices.Equal(got, []string{"squashfs"}) {
		t.Errorf("Lookup(fs-squashfs) = %v", got)
	}
	if got := s.Lookup("virtio:d00000002v00001AF4"); got != nil {
		t.Errorf("Lookup of a virtio block device = %v, want none (no such module here)", got)
	}
}

// TestColdplug: virtio_pci for the PCI device, then virtio_net and
// virtio_rng for the devices that appear once it is loaded, each once;
// a device no module claims is left alone.
func TestColdplug(t *testing.T) {
	dir := tree(t, map[string]string{"modules.dep": dep8021q, "modules.alias": aliasFile})
	sys := t.TempDir()
	dev := func(bus, name, modalias string) {
		p := filepath.Join(sys, bus, "devices", name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "modalias"), []byte(modalias+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dev("pci", "0000:00:02.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
	dev("pci", "0000:00:01.0", "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00") // host bridge: nothing
	s, got := recorder(t, dir)
	s.Insert = func(f string) error {
		*got = append(*got, f)
		if Name(f) == "virtio_pci" { // its probe makes the virtio devices
			dev("virtio", "virtio0", "virtio:d00000001v00001AF4")
			dev("virtio", "virtio1", "virtio:d00000004v00001AF4")
		}
		return nil
	}
	loaded, err := s.Coldplug(sys, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio_pci", "virtio_net", "virtio_rng"}; !slices.Equal(loaded, want) {
		t.Errorf("Coldplug loaded %v, want %v", loaded, want)
	}
	want := []string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/net/virtio_net.ko", "kernel/drivers/char/hw_random/virtio-rng.ko"}
	if !slices.Equal(*got, want) {
		t.Errorf("inserted %v, want %v", *got, want)
	}
}

// TestSoftdepLoadedFirst: libcrc32c's "pre: crc32c" loads the crc32c
// implementations first, by alias; one refusing to load (crc32c_intel on
// a CPU without SSE4.2: ENODEV) does not fail libcrc32c.
func TestSoftdepLoadedFirst(t *testing.T) {
	dir := tree(t, map[string]string{
		"modules.dep": "kernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n" +
			"kernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko\n",
		"modules.alias":   "alias crc32c crc32c_generic\nalias crc32c crc32c_intel\n",
		"modules.softdep": "# Soft dependencies extracted from modules themselves.\nsoftdep libcrc32c pre: crc32c post: nothing_here\n",
	})
	s, got := recorder(t, dir)
	s.Insert = func(f string) error {
		*got = append(*got, Name(f))
		if Name(f) == "crc32c_intel" {
			return unix.ENODEV
		}
		return nil
	}
	if err := s.Load("nf_tables"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"crc32c_generic", "crc32c_intel", "libcrc32c", "nf_tables"}; !slices.Equal(*got, want) {
		t.Errorf("inserted %v, want %v", *got, want)
	}
	if _, err := Open(tree(t, map[string]string{"modules.dep": "", "modules.softdep": "softdep x\n"})); err == nil || !strings.Contains(err.Error(), "modules.softdep:1") {
		t.Errorf("Open of a bad modules.softdep = %v", err)
	}
}
