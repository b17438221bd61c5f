package install

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
)

// TestInstallRootBiggerThanSlot: a signed bundle whose root does not fit
// the inactive partition is refused before a byte is written, naming the
// sizes.
func TestInstallRootBiggerThanSlot(t *testing.T) {
	d := newDevice(t)
	d.newRoot = random(slotSize + 1)
	b := d.bundle(t, compat, 2, d.priv)
	before := d.snapshot(t)
	_, err := Install(b, d.target())
	if !errors.Is(err, bundle.ErrPayload) || !errorContains(err, "partition root-b holds") {
		t.Fatalf("Install() of a root over the slot = %v, want ErrPayload naming the partition", err)
	}
	if d.snapshot(t) != before {
		t.Fatal("a root too big for its slot changed the device")
	}
}

// TestInstallBundleSwappedAfterVerify: the bundle file is replaced by
// another one, signed by the same key and of the same version but with
// another root, between the verification and the write (a second
// upload, a local process). The write or the read-back must notice, the
// new slot must have no entry, and the device still boots slot A.
func TestInstallBundleSwappedAfterVerify(t *testing.T) {
	d := newDevice(t)
	b := d.bundle(t, compat, 2, d.priv)
	d.newRoot = random(len(d.newRoot))
	other, err := os.ReadFile(d.bundle(t, compat, 2, d.priv))
	if err != nil {
		t.Fatal(err)
	}
	tgt := d.target()
	open := tgt.OpenSlot
	tgt.OpenSlot = func(s string) (Partition, error) {
		// Called after Verify, before anything is written.
		if err := os.WriteFile(b, other, 0o644); err != nil {
			t.Fatal(err)
		}
		return open(s)
	}
	_, err = Install(b, tgt)
	if !errors.Is(err, ErrReadBack) && !errors.Is(err, bundle.ErrPayload) {
		t.Fatalf("Install() of a bundle swapped after Verify = %v, want ErrReadBack or ErrPayload", err)
	}
	if e, err := bootslot.Default(bootslot.DirESP(d.espDir)); err != nil || e.File != "slot-a.conf" {
		t.Fatalf("default entry %s (%v) after a swapped bundle, want slot-a.conf", e.File, err)
	}
	if entries, _ := bootslot.SlotEntries(bootslot.DirESP(d.espDir), "b"); len(entries) != 0 {
		t.Fatalf("slot b has entries after a swapped bundle: %v", entries)
	}
}

func errorContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
