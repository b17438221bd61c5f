// Package install puts a verified firmware bundle into the inactive A/B
// slot and arms a try-once boot of it.
//
// The order is what makes a power cut at any moment harmless:
//  1. the whole bundle is verified (signature, hardware, version, every
//     payload's size and hash) before anything is written;
//  2. the inactive slot's boot entries are removed, so that nothing points
//     at the slot while it is being written;
//  3. the root and kernel payloads are written, hashed again as they are
//     written, synced, and read back and hashed a third time;
//  4. the new entry is written under a temporary name and renamed to
//     slot-x+1-0.conf: that one rename arms the update.
//
// The running slot's entry is never touched, so until step 4 completes the
// device boots what it booted before, and after it boots the new slot once;
// the new slot stays only if it blesses itself (bootslot.Bless).
package install

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
)

// Tries is how often systemd-boot tries a freshly installed slot before it
// falls back: once.
const Tries = 1

// Partition is a root slot's block device (or a window of an image file).
type Partition interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	Sync() error
	Close() error
}

// Target is the device (or image) an update goes to.
type Target struct {
	ESP       bootslot.ESP
	OpenSlot  func(slot string) (Partition, error)
	Active    string // the slot running now; the other one is written
	Trusted   []ed25519.PublicKey
	Compat    string // this hardware's compatible string
	Installed uint64 // bundles must be newer; 0 = take the highest entry version on the ESP
}

// Result tells what Install did.
type Result struct {
	Slot     string // the slot written
	Entry    string // the armed entry's file name
	Manifest bundle.Manifest
}

var (
	// ErrNoActiveEntry means the running slot has no entry to take the
	// kernel command line from.
	ErrNoActiveEntry = errors.New("install: running slot has no boot entry")
	// ErrActiveOnTrial means the running slot has not been blessed yet: its
	// health check must pass before the other slot may be replaced.
	ErrActiveOnTrial = errors.New("install: running slot is not blessed yet")
)

// Install verifies the bundle at bundlePath and installs it into the slot
// that is not t.Active. Nothing is written unless the whole bundle passed.
func Install(bundlePath string, t Target) (Result, error) {
	inactive, err := bootslot.Other(t.Active)
	if err != nil {
		return Result{}, err
	}
	entries, err := bootslot.List(t.ESP)
	if err != nil {
		return Result{}, err
	}
	installed := t.Installed
	var active *bootslot.BootEntry
	for i, e := range entries {
		if t.Installed == 0 {
			installed = max(installed, e.Entry.Version)
		}
		if e.Name.Slot == t.Active && active == nil {
			active = &entries[i]
		}
	}
	if active == nil {
		return Result{}, fmt.Errorf("%w: slot %s", ErrNoActiveEntry, t.Active)
	}
	// Writing the other slot retires its entry; if the running slot were
	// still on trial, a failed boot of it would then leave nothing to boot.
	if active.Name.Counting {
		return Result{}, fmt.Errorf("%w: slot %s (%s)", ErrActiveOnTrial, t.Active, active.File)
	}
	pol := bundle.Policy{Trusted: t.Trusted, Compatible: t.Compat, Installed: installed}
	m, err := bundle.Verify(bundlePath, pol)
	if err != nil {
		return Result{}, fmt.Errorf("verify %s: %w", bundlePath, err)
	}

	part, err := t.OpenSlot(inactive)
	if err != nil {
		return Result{}, fmt.Errorf("open slot %s: %w", inactive, err)
	}
	defer func() { _ = part.Close() }()
	if root, _ := m.Payload(bundle.PayloadRoot); root.Size > part.Size() {
		return Result{}, fmt.Errorf("%w: root is %d bytes, partition %s holds %d", bundle.ErrPayload, root.Size, bootslot.PartLabel(inactive), part.Size())
	}

	// Nothing may point at the slot while it is written.
	for _, e := range entries {
		if e.Name.Slot == inactive {
			if err := t.ESP.Remove(path.Join(bootslot.EntriesDir, e.File)); err != nil {
				return Result{}, fmt.Errorf("retire entry %s: %w", e.File, err)
			}
		}
	}
	if err := writePayloads(bundlePath, pol, t.ESP, part, inactive); err != nil {
		return Result{}, err
	}
	if err := readBack(m, t.ESP, part, inactive); err != nil {
		return Result{}, err
	}

	entry := bootslot.Entry{
		Title:   fmt.Sprintf("umedge %s (slot %s)", m.Release, inactive),
		Version: m.Version,
		Linux:   "/" + bootslot.KernelPath(inactive),
		Options: bootslot.SlotOptions(active.Entry.Options, inactive),
	}
	tmp := path.Join(bootslot.EntriesDir, "slot-"+inactive+".new")
	if err := bootslot.WriteFile(t.ESP, tmp, entry.Marshal()); err != nil {
		return Result{}, fmt.Errorf("write entry: %w", err)
	}
	name := bootslot.TrialName(inactive, Tries)
	if err := t.ESP.Rename(tmp, path.Join(bootslot.EntriesDir, name)); err != nil {
		return Result{}, fmt.Errorf("arm entry %s: %w", name, err)
	}
	return Result{Slot: inactive, Entry: name, Manifest: m}, nil
}

// writePayloads streams the bundle a second time, now writing. The reader
// checks every payload again, so a bundle file changed since Verify fails
// here and the slot is left without an entry.
func writePayloads(bundlePath string, pol bundle.Policy, esp bootslot.ESP, part Partition, slot string) error {
	f, err := os.Open(bundlePath)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := bundle.Open(f, pol)
	if err != nil {
		return fmt.Errorf("reopen bundle: %w", err)
	}
	if err := esp.MkdirAll(slot); err != nil {
		return fmt.Errorf("create %s on the ESP: %w", slot, err)
	}
	for {
		p, pr, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch p.Name {
		case bundle.PayloadRoot:
			if _, err := io.Copy(io.NewOffsetWriter(part, 0), pr); err != nil {
				return fmt.Errorf("write root to slot %s: %w", slot, err)
			}
			if err := part.Sync(); err != nil {
				return fmt.Errorf("sync slot %s: %w", slot, err)
			}
		case bundle.PayloadKernel:
			w, err := esp.Create(bootslot.KernelPath(slot))
			if err != nil {
				return fmt.Errorf("write kernel of slot %s: %w", slot, err)
			}
			_, err = io.Copy(w, pr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write kernel of slot %s: %w", slot, err)
			}
		}
	}
}

// ErrReadBack means what was written does not read back as the manifest
// says: a short write or bad flash. The slot is left without an entry.
var ErrReadBack = errors.New("install: slot does not read back as written")

func readBack(m bundle.Manifest, esp bootslot.ESP, part Partition, slot string) error {
	root, _ := m.Payload(bundle.PayloadRoot)
	if err := checkHash(io.NewSectionReader(part, 0, root.Size), root); err != nil {
		return fmt.Errorf("slot %s root: %w", slot, err)
	}
	kernel, _ := m.Payload(bundle.PayloadKernel)
	kr, err := esp.Open(bootslot.KernelPath(slot))
	if err != nil {
		return fmt.Errorf("%w: slot %s kernel: %w", ErrReadBack, slot, err)
	}
	defer kr.Close()
	if err := checkHash(kr, kernel); err != nil {
		return fmt.Errorf("slot %s kernel: %w", slot, err)
	}
	return nil
}

func checkHash(r io.Reader, p bundle.Payload) error {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReadBack, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != p.Size || got != p.SHA256 {
		return fmt.Errorf("%w: %d bytes with sha256 %s, want %d bytes with %s", ErrReadBack, n, got, p.Size, p.SHA256)
	}
	return nil
}
