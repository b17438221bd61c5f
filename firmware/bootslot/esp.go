package bootslot

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// ESP is the EFI system partition as the updater sees it: names are
// slash-separated and relative to the partition's root. Create's writer
// makes the file durable when it is closed; Rename and Remove are durable
// when they return.
type ESP interface {
	ReadDir(dir string) ([]string, error)
	Open(name string) (io.ReadCloser, error)
	Create(name string) (io.WriteCloser, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	MkdirAll(dir string) error
}

// DirESP is an ESP mounted at dir (vfat on the device).
func DirESP(dir string) ESP { return dirESP(dir) }

type dirESP string

func (d dirESP) path(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

func (d dirESP) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(d.path(dir))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func (d dirESP) Open(name string) (io.ReadCloser, error) {
	return os.Open(d.path(name)) //nolint:gosec // names are the ESP layout's own, not input
}

func (d dirESP) Create(name string) (io.WriteCloser, error) {
	f, err := os.OpenFile(d.path(name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644) //nolint:gosec // ESP files are boot entries and kernels, world-readable like /boot
	if err != nil {
		return nil, err
	}
	return syncCloser{f}, nil
}

type syncCloser struct{ *os.File }

func (s syncCloser) Close() error {
	if err := s.Sync(); err != nil {
		_ = s.File.Close()
		return fmt.Errorf("sync %s: %w", s.Name(), err)
	}
	return s.File.Close()
}

// Rename renames and makes the new name durable. On vfat the renamed
// file's directory entry gets its start cluster only when the file's own
// inode is written back: syncing the directory alone leaves an entry with
// cluster 0 on disk (a power cut then leaves an unreadable entry, seen in
// the boot test), so the file is synced too.
func (d dirESP) Rename(oldname, newname string) error {
	if err := os.Rename(d.path(oldname), d.path(newname)); err != nil {
		return err
	}
	f, err := os.Open(d.path(newname))
	if err != nil {
		return err
	}
	err = f.Sync()
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("sync %s: %w", newname, err)
	}
	return d.syncDir(path.Dir(newname))
}

func (d dirESP) Remove(name string) error {
	if err := os.Remove(d.path(name)); err != nil {
		return err
	}
	return d.syncDir(path.Dir(name))
}

func (d dirESP) MkdirAll(dir string) error {
	return os.MkdirAll(d.path(dir), 0o755) //nolint:gosec // ESP directories are world-readable like /boot
}

func (d dirESP) syncDir(dir string) error {
	f, err := os.Open(d.path(dir))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads a whole file from esp.
func ReadFile(esp ESP, name string) ([]byte, error) {
	r, err := esp.Open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// WriteFile writes data to name on esp, durably.
func WriteFile(esp ESP, name string, data []byte) error {
	w, err := esp.Create(name)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}
