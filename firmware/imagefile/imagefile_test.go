package imagefile_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
	"github.com/umedge/umedge/firmware/imagefile"
	"github.com/umedge/umedge/firmware/install"
	"github.com/umedge/umedge/images/diskimage"
)

func randomFile(t *testing.T, p string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallIntoImage installs a bundle into an image file and plays the
// boot loader on it: the try-once entry boots once, then falls back.
func TestInstallIntoImage(t *testing.T) {
	dir := t.TempDir()
	arch := diskimage.Arches["amd64"]
	arch.ESPSize, arch.RootSize, arch.DataSize = 40<<20, 1<<20, 40<<20
	c := diskimage.Config{Arch: arch, Version: 1, Release: "v1", Out: dir + "/disk.img",
		Kernel: dir + "/k1", Bootloader: dir + "/boot.efi", Root: dir + "/r1"}
	randomFile(t, c.Kernel, 100_000)
	randomFile(t, c.Bootloader, 10_000)
	randomFile(t, c.Root, 200_000)
	if err := diskimage.Build(c); err != nil {
		t.Fatal(err)
	}

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	k2 := randomFile(t, dir+"/k2", 150_000)
	r2 := randomFile(t, dir+"/r2", 400_000)
	var buf bytes.Buffer
	m := bundle.Manifest{Compatible: arch.Compatible, Version: 2, Release: "v2"}
	if err := bundle.Create(&buf, m, []bundle.Source{{Name: "kernel", Path: dir + "/k2"}, {Name: "root", Path: dir + "/r2"}}, priv); err != nil {
		t.Fatal(err)
	}
	bpath := filepath.Join(dir, "v2.bundle")
	if err := os.WriteFile(bpath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	img, err := imagefile.Open(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := img.Target()
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Active != "a" {
		t.Fatalf("active slot %s", tgt.Active)
	}
	tgt.Trusted, tgt.Compat = []ed25519.PublicKey{pub}, arch.Compatible
	res, err := install.Install(bpath, tgt)
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	if res.Slot != "b" {
		t.Fatalf("installed into %s", res.Slot)
	}

	// Reopen: everything must be on the image file itself.
	img, err = imagefile.Open(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got, err := bootslot.ReadFile(img.ESP, "b/vmlinuz"); err != nil || !bytes.Equal(got, k2) {
		t.Fatalf("b/vmlinuz not the new kernel (%v)", err)
	}
	part, err := img.OpenSlot("b")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(r2))
	if _, err := part.ReadAt(got, 0); err != nil || !bytes.Equal(got, r2) {
		t.Fatalf("root-b not the new root (%v)", err)
	}
	e, err := bootslot.TryBoot(img.ESP)
	if err != nil || e.File != "slot-b+0-1.conf" {
		t.Fatalf("first boot %s, %v", e.File, err)
	}
	e, err = bootslot.TryBoot(img.ESP)
	if err != nil || e.File != "slot-a.conf" {
		t.Fatalf("second boot without bless %s, %v", e.File, err)
	}
}
