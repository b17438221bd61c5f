// Package imagefile opens an appliance disk image file as an update
// target, so that host tools and tests can install a bundle into an image
// and play the boot loader on it without root, loop devices or mounts.
package imagefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/install"
)

// ESPLabel is the GPT partition name of the EFI system partition.
const ESPLabel = "ESP"

// Image is an open disk image.
type Image struct {
	f     *os.File
	table *gpt.Table
	ESP   bootslot.ESP
}

// Open opens the image at path for reading and writing.
func Open(imagePath string) (*Image, error) {
	f, err := os.OpenFile(imagePath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	img, err := open(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", imagePath, err)
	}
	return img, nil
}

func open(f *os.File) (*Image, error) {
	b := file.New(f, false)
	table, err := gpt.Read(b, 512, 512)
	if err != nil {
		return nil, fmt.Errorf("read partition table: %w", err)
	}
	img := &Image{f: f, table: table}
	p, err := img.partition(ESPLabel)
	if err != nil {
		return nil, err
	}
	esp, err := fat32.Read(b, int64(p.Size), int64(p.Start)*512, 512)
	if err != nil {
		return nil, fmt.Errorf("read ESP: %w", err)
	}
	img.ESP = FATESP(esp)
	return img, nil
}

// Close closes the image file.
func (img *Image) Close() error { return img.f.Close() }

var errNoPartition = errors.New("no partition named")

func (img *Image) partition(name string) (*gpt.Partition, error) {
	for _, p := range img.table.Partitions {
		if p != nil && p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w %s", errNoPartition, name)
}

// OpenSlot returns slot's root partition as a window of the image.
func (img *Image) OpenSlot(slot string) (install.Partition, error) {
	p, err := img.partition(bootslot.PartLabel(slot))
	if err != nil {
		return nil, err
	}
	return install.FileWindow(img.f, int64(p.Start)*512, int64(p.Size)), nil
}

// Target returns the image as an update target; the active slot is the
// one systemd-boot would boot now.
func (img *Image) Target() (install.Target, error) {
	e, err := bootslot.Default(img.ESP)
	if err != nil {
		return install.Target{}, err
	}
	return install.Target{ESP: img.ESP, OpenSlot: img.OpenSlot, Active: e.Name.Slot}, nil
}

// FATESP adapts a go-diskfs FAT32 file system to bootslot.ESP. Its writes
// go straight to the image file.
func FATESP(fsys *fat32.FileSystem) bootslot.ESP { return fatESP{fsys} }

type fatESP struct{ fs *fat32.FileSystem }

// rel is name as go-diskfs wants it: io/fs style, relative, "." for the
// root.
func rel(name string) string { return path.Clean(strings.TrimPrefix(name, "/")) }

func (e fatESP) exists(name string) bool {
	dir, base := path.Split(rel(name))
	ents, err := e.fs.ReadDir(rel(dir))
	if err != nil {
		return false
	}
	for _, d := range ents {
		if strings.EqualFold(d.Name(), base) {
			return true
		}
	}
	return false
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (e fatESP) ReadDir(dir string) ([]string, error) {
	if dir != "" && dir != "." && !e.exists(dir) {
		return nil, notExist("readdir", dir)
	}
	ents, err := e.fs.ReadDir(rel(dir))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, d := range ents {
		if n := d.Name(); n != "." && n != ".." {
			names = append(names, n)
		}
	}
	return names, nil
}

func (e fatESP) Open(name string) (io.ReadCloser, error) {
	if !e.exists(name) {
		return nil, notExist("open", name)
	}
	f, err := e.fs.OpenFile(rel(name), os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (e fatESP) Create(name string) (io.WriteCloser, error) {
	// Remove first: the FAT code keeps a truncated file's first cluster.
	if e.exists(name) {
		if err := e.fs.Remove(rel(name)); err != nil {
			return nil, err
		}
	}
	f, err := e.fs.OpenFile(rel(name), os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (e fatESP) Rename(oldname, newname string) error {
	if !e.exists(oldname) {
		return notExist("rename", oldname)
	}
	if e.exists(newname) {
		if err := e.fs.Remove(rel(newname)); err != nil {
			return err
		}
	}
	return e.fs.Rename(rel(oldname), rel(newname))
}

func (e fatESP) Remove(name string) error {
	if !e.exists(name) {
		return notExist("remove", name)
	}
	return e.fs.Remove(rel(name))
}

func (e fatESP) MkdirAll(dir string) error {
	if err := e.fs.Mkdir(rel(dir)); err != nil && !e.exists(dir) {
		return err
	}
	return nil
}
