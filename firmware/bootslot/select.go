package bootslot

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// BootEntry is one slot entry found on the ESP.
type BootEntry struct {
	File  string // file name inside EntriesDir
	Name  Name
	Entry Entry
}

// Bootable reports whether systemd-boot would still boot e as a default:
// it is blessed or has tries left.
func (e BootEntry) Bootable() bool { return !e.Name.Counting || e.Name.Left > 0 }

// List returns the slot entries on esp, in the order systemd-boot sorts
// them (the first is the default). Files that are not slot entries are
// skipped; a slot entry that cannot be parsed is an error.
func List(esp ESP) ([]BootEntry, error) {
	names, err := esp.ReadDir(EntriesDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", EntriesDir, err)
	}
	var out []BootEntry
	for _, file := range names {
		n, ok := ParseName(file)
		if !ok {
			continue
		}
		data, err := ReadFile(esp, path.Join(EntriesDir, file))
		if err != nil {
			return nil, fmt.Errorf("read entry %s: %w", file, err)
		}
		e, err := ParseEntry(data)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", file, err)
		}
		out = append(out, BootEntry{File: file, Name: n, Entry: e})
	}
	slices.SortFunc(out, compare)
	return out, nil
}

// compare orders entries like systemd-boot's boot_entry_compare for
// entries sharing a sort-key: entries without tries left go last, then the
// higher version first, then the higher file name first.
func compare(x, y BootEntry) int {
	if xb, yb := x.Bootable(), y.Bootable(); xb != yb {
		if xb {
			return -1
		}
		return 1
	}
	if x.Entry.Version != y.Entry.Version {
		if x.Entry.Version > y.Entry.Version {
			return -1
		}
		return 1
	}
	return -strings.Compare(x.File, y.File)
}

// Default returns the entry systemd-boot boots when nothing else is asked:
// the first bootable one in List order.
func Default(esp ESP) (BootEntry, error) {
	entries, err := List(esp)
	if err != nil {
		return BootEntry{}, err
	}
	for _, e := range entries {
		if e.Bootable() {
			return e, nil
		}
	}
	return BootEntry{}, ErrNoEntry
}

// SlotEntries returns the entries of slot on esp, whatever their state.
func SlotEntries(esp ESP, slot string) ([]BootEntry, error) {
	entries, err := List(esp)
	if err != nil {
		return nil, err
	}
	var out []BootEntry
	for _, e := range entries {
		if e.Name.Slot == slot {
			out = append(out, e)
		}
	}
	return out, nil
}

// TryBoot does on esp what systemd-boot does when it boots its default
// entry: an entry on trial is renamed with one try fewer. It returns the
// entry as booted (its new name). Host tools and tests use it to play the
// boot loader on an image.
func TryBoot(esp ESP) (BootEntry, error) {
	e, err := Default(esp)
	if err != nil {
		return BootEntry{}, err
	}
	if !e.Name.Counting {
		return e, nil
	}
	n := e.Name
	n.Left--
	n.Done++
	if err := esp.Rename(path.Join(EntriesDir, e.File), path.Join(EntriesDir, n.String())); err != nil {
		return BootEntry{}, fmt.Errorf("count boot of %s: %w", e.File, err)
	}
	e.File, e.Name = n.String(), n
	return e, nil
}
