package install

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/keys"
)

// Where the running root keeps what the updater trusts. Both are on the
// signed read-only root, so a new root brings its own key list.
const (
	CompatibleFile = "/etc/umedge/firmware/compatible"
	TrustedDir     = "/etc/umedge/firmware/trusted"
)

// Device describes the running appliance with its ESP mounted at espDir:
// the active slot from the kernel command line, the compatible string and
// the trusted keys from the root, the slots from the partition table.
func Device(espDir string) (Target, error) { return deviceAt("/", espDir) }

// deviceAt is Device with /proc, /sys and /etc under root (tests).
func deviceAt(root, espDir string) (Target, error) {
	cmdline, err := os.ReadFile(filepath.Join(root, "proc/cmdline"))
	if err != nil {
		return Target{}, fmt.Errorf("read kernel command line: %w", err)
	}
	active := bootslot.CmdlineSlot(string(cmdline))
	if err := bootslot.CheckSlot(active); err != nil {
		return Target{}, fmt.Errorf("kernel command line appliance.slot: %w", err)
	}
	compat, err := os.ReadFile(filepath.Join(root, CompatibleFile))
	if err != nil {
		return Target{}, fmt.Errorf("read compatible string: %w", err)
	}
	trusted, err := keys.LoadTrusted(filepath.Join(root, TrustedDir))
	if err != nil {
		return Target{}, fmt.Errorf("load trusted keys: %w", err)
	}
	return Target{
		ESP:      bootslot.DirESP(espDir),
		OpenSlot: func(slot string) (Partition, error) { return openBlockSlot(root, slot) },
		Active:   active,
		Trusted:  trusted,
		Compat:   strings.TrimSpace(string(compat)),
	}, nil
}

// openBlockSlot opens the block device whose GPT partition name is
// root-<slot>.
func openBlockSlot(root, slot string) (Partition, error) {
	dev, err := findPartition(root, bootslot.PartLabel(slot))
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("size of %s: %w", dev, err)
	}
	return &filePartition{File: f, size: size}, nil
}

// FindPartition returns the device node of the partition whose GPT name
// is label, read from sysfs (the appliance has no udev).
func FindPartition(label string) (string, error) { return findPartition("/", label) }

func findPartition(root, label string) (string, error) {
	uevents, err := filepath.Glob(filepath.Join(root, "sys/class/block/*/uevent"))
	if err != nil {
		return "", err
	}
	for _, u := range uevents {
		f, err := os.Open(u)
		if err != nil {
			continue
		}
		var name, devname string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "PARTNAME":
				name = v
			case "DEVNAME":
				devname = v
			}
		}
		_ = f.Close()
		if name == label && devname != "" {
			return filepath.Join(root, "dev", devname), nil
		}
	}
	return "", fmt.Errorf("%w %s", errNoPartition, label)
}

var (
	errNoPartition = errors.New("no partition named")
	errOutside     = errors.New("install: out of bounds")
)

// filePartition is a partition held by an open file: a block device, or a
// window [off, off+size) of an image file.
type filePartition struct {
	*os.File
	off, size int64
}

func (p *filePartition) Size() int64 { return p.size }

func (p *filePartition) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > p.size {
		return 0, fmt.Errorf("%w: write of %d bytes at %d outside a partition of %d", errOutside, len(b), off, p.size)
	}
	return p.File.WriteAt(b, p.off+off)
}

func (p *filePartition) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.size {
		return 0, io.EOF
	}
	if rest := p.size - off; int64(len(b)) > rest {
		n, err := p.File.ReadAt(b[:rest], p.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return p.File.ReadAt(b, p.off+off)
}

// FileWindow is a partition of size bytes at off in the open file f; Close
// leaves f open.
func FileWindow(f *os.File, off, size int64) Partition {
	return windowPartition{&filePartition{File: f, off: off, size: size}}
}

type windowPartition struct{ *filePartition }

func (windowPartition) Close() error { return nil }
