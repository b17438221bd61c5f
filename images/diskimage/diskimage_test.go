package diskimage

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/imagefile"
)

func inputs(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	// Small partitions keep the test fast; FAT32 needs about 33 MiB.
	arch := Arches["amd64"]
	arch.ESPSize, arch.RootSize, arch.DataSize = 40*mib, 1*mib, 40*mib
	c := Config{Arch: arch, Version: 1, Release: "test", Kernel: dir + "/vmlinuz", Bootloader: dir + "/boot.efi", Root: dir + "/root.sqfs"}
	for p, n := range map[string]int{c.Kernel: 300_000, c.Bootloader: 20_000, c.Root: 500_000} {
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestBuildReproducible(t *testing.T) {
	c := inputs(t)
	dir := t.TempDir()
	var images [][]byte
	for _, name := range []string{"a.img", "b.img"} {
		c.Out = filepath.Join(dir, name)
		if err := Build(c); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(c.Out)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Fatal("two builds of the same inputs differ")
	}
	c.Version = 2
	c.Out = filepath.Join(dir, "c.img")
	if err := Build(c); err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(c.Out)
	if bytes.Equal(images[0], other) {
		t.Fatal("a different version gave the same image")
	}
}

func TestBuildLayout(t *testing.T) {
	c := inputs(t)
	c.Out = filepath.Join(t.TempDir(), "disk.img")
	if err := Build(c); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := gpt.Read(file.New(f, true), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		typ  gpt.Type
	}{{"ESP", gpt.EFISystemPartition}, {"root-a", gpt.LinuxRootX86_64}, {"root-b", gpt.LinuxRootX86_64}, {"data", gpt.LinuxFilesystem}}
	if len(table.Partitions) < len(want) {
		t.Fatalf("%d partitions", len(table.Partitions))
	}
	for i, w := range want {
		p := table.Partitions[i]
		if p.Name != w.name || p.Type != w.typ || p.Start%2048 != 0 {
			t.Errorf("partition %d = %s %s at %d, want %s %s 1 MiB aligned", i+1, p.Name, p.Type, p.Start, w.name, w.typ)
		}
	}
	root := make([]byte, 500_000)
	if _, err := f.ReadAt(root, int64(table.Partitions[1].Start)*512); err != nil {
		t.Fatal(err)
	}
	if wantRoot, _ := os.ReadFile(c.Root); !bytes.Equal(root, wantRoot) {
		t.Error("root-a does not hold the root image")
	}

	img, err := imagefile.Open(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	e, err := bootslot.Default(img.ESP)
	if err != nil || e.File != "slot-a.conf" || e.Entry.Version != 1 {
		t.Fatalf("default entry %+v, %v", e, err)
	}
	if e.Entry.Options != c.Arch.Cmdline("a") {
		t.Errorf("options %q", e.Entry.Options)
	}
	for file, src := range map[string]string{"EFI/BOOT/BOOTX64.EFI": c.Bootloader, "a/vmlinuz": c.Kernel} {
		got, err := bootslot.ReadFile(img.ESP, file)
		want, _ := os.ReadFile(src)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ESP %s does not hold %s (%v)", file, src, err)
		}
	}
	conf, err := bootslot.ReadFile(img.ESP, "loader/loader.conf")
	if err != nil || string(conf) != bootslot.LoaderConf {
		t.Errorf("loader.conf = %q, %v", conf, err)
	}
}

func TestBuildRefusesOversizedRoot(t *testing.T) {
	c := inputs(t)
	c.Arch.RootSize = 4096
	c.Out = filepath.Join(t.TempDir(), "disk.img")
	if err := Build(c); err == nil {
		t.Fatal("a root larger than its slot was accepted")
	}
}

// TestBuildRefusesKernelWithoutRoomForTheOtherSlot builds with a kernel
// that fits the ESP once but not twice: Build must refuse it, naming the
// kernel, before writing the image.
func TestBuildRefusesKernelWithoutRoomForTheOtherSlot(t *testing.T) {
	c := inputs(t)
	if err := os.WriteFile(c.Kernel, make([]byte, 20*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Out = filepath.Join(t.TempDir(), "disk.img")
	err := Build(c)
	if !errors.Is(err, errESPTooSmall) || !strings.Contains(err.Error(), c.Kernel) {
		t.Fatalf("a 20 MiB kernel on a 40 MiB ESP: %v, want %v naming the kernel", err, errESPTooSmall)
	}
	if _, err := os.Stat(c.Out); !os.IsNotExist(err) {
		t.Errorf("the refused image was written (%v)", err)
	}
	// 15 MiB: 15 + 18.75 + the loader + 4 MiB of slack fit 40 MiB.
	if err := os.WriteFile(c.Kernel, make([]byte, 15*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Build(c); err != nil {
		t.Fatalf("a 15 MiB kernel on a 40 MiB ESP: %v", err)
	}
}

// TestArchESPHoldsCommittedKernels checks each arch's ESP against the
// kernel images/kernel commits for it, with a 1 MiB allowance for
// systemd-boot (Debian's is ~0.1 MB): a kernel that outgrows the ESP
// fails here, not at the first update on a box.
func TestArchESPHoldsCommittedKernels(t *testing.T) {
	for name, a := range Arches {
		fi, err := os.Stat(filepath.Join("..", "kernel", name, "vmlinuz"))
		if err != nil {
			t.Fatal(err)
		}
		if need := ESPNeed(fi.Size(), mib); need > a.ESPSize {
			t.Errorf("%s: the %d-byte kernel needs an ESP of %d MiB, it is %d MiB", name, fi.Size(), need/mib, a.ESPSize/mib)
		}
	}
}

// TestESPPassesFsck runs dosfstools' checker on the built ESP and data
// partition when it is installed (it is not needed to build).
func TestESPPassesFsck(t *testing.T) {
	fsck, err := exec.LookPath("fsck.fat")
	if err != nil {
		t.Skip("fsck.fat (dosfstools) not installed")
	}
	c := inputs(t)
	c.Out = filepath.Join(t.TempDir(), "disk.img")
	if err := Build(c); err != nil {
		t.Fatal(err)
	}
	l := PlanLayout(c.Arch, [32]byte{})
	for _, i := range []int{0, 3} {
		p := l.Partitions[i]
		part := filepath.Join(t.TempDir(), p.Name)
		img, _ := os.ReadFile(c.Out)
		if err := os.WriteFile(part, img[p.Start*512:(p.End+1)*512], 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(fsck, "-n", part).CombinedOutput()
		if err != nil {
			t.Errorf("fsck.fat -n %s: %v\n%s", p.Name, err, out)
		}
	}
}
