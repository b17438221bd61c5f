// Package diskimage assembles an appliance's GPT disk image: the EFI system
// partition with systemd-boot, one kernel and the slot A entry, the
// squashfs root in slot A, an empty slot B, and the data partition.
//
// The output depends on the inputs only: GUIDs are derived from the inputs'
// hashes, file systems carry fixed time stamps.
package diskimage

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/imagefile"
	"github.com/umedge/umedge/images/rootfs"
)

// DataLabel is the GPT partition name and file system label of the data
// partition.
const DataLabel = "data"

// Config is one image build.
type Config struct {
	Arch       Arch
	Kernel     string // kernel image file (EFI stub)
	Bootloader string // systemd-boot EFI binary
	Root       string // squashfs of slot A
	Version    uint64 // monotonic firmware version of slot A
	Release    string // human release name
	Out        string // the disk image to write
	// KernelArgs are appended to slot A's kernel command line (an update
	// copies the running slot's), e.g. appliance.health_grace=45s.
	KernelArgs string
}

const sector = 512

// Layout is the partition table of an image, in bytes.
type Layout struct {
	Size       int64
	Partitions []*gpt.Partition
}

// PlanLayout places the partitions of a at 1 MiB boundaries.
func PlanLayout(a Arch, seed [32]byte) Layout {
	type part struct {
		name string
		typ  gpt.Type
		size int64
	}
	parts := []part{
		{imagefile.ESPLabel, gpt.EFISystemPartition, a.ESPSize},
		{bootslot.PartLabel("a"), a.RootType, a.RootSize},
		{bootslot.PartLabel("b"), a.RootType, a.RootSize},
		{DataLabel, gpt.LinuxFilesystem, a.DataSize},
	}
	var l Layout
	off := int64(mib)
	for i, p := range parts {
		l.Partitions = append(l.Partitions, &gpt.Partition{
			Index: i + 1,
			Start: uint64(off / sector),
			End:   uint64((off+p.size)/sector - 1),
			Size:  uint64(p.size),
			Type:  p.typ,
			Name:  p.name,
			GUID:  guid(seed, p.name),
		})
		off += p.size
	}
	l.Size = off + mib // room for the backup GPT
	return l
}

// guid derives a version-4-shaped GUID from the build's seed and a name.
func guid(seed [32]byte, name string) string {
	h := sha256.Sum256(append(seed[:], name...))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

var (
	errRootTooLarge = errors.New("diskimage: root does not fit its slot")
	errESPTooSmall  = errors.New("diskimage: ESP too small for an A/B pair of this kernel")
	errNoRanges     = errors.New("go-diskfs directory has no disk ranges")
	errNotDotDot    = errors.New("not the .. entry")
)

// Build writes the image.
func Build(c Config) error {
	seed, err := inputSeed(c)
	if err != nil {
		return err
	}
	l := PlanLayout(c.Arch, seed)
	rootInfo, err := os.Stat(c.Root)
	if err != nil {
		return err
	}
	if rootInfo.Size() > c.Arch.RootSize {
		return fmt.Errorf("%w: root %s is %d bytes, slot holds %d", errRootTooLarge, c.Root, rootInfo.Size(), c.Arch.RootSize)
	}
	if err := espFits(c); err != nil {
		return err
	}

	// go-diskfs stamps FAT entries with SOURCE_DATE_EPOCH when it is set.
	defer restoreEnv("SOURCE_DATE_EPOCH")()
	if err := os.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(rootfs.Epoch.Unix())); err != nil {
		return fmt.Errorf("diskimage: %w", err)
	}

	f, err := os.OpenFile(c.Out, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644) //nolint:gosec // a disk image to flash or boot, not a secret
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(l.Size); err != nil {
		return err
	}
	b := file.New(f, false)
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               guid(seed, "disk"),
		Partitions:         l.Partitions,
	}
	if err := table.Write(f, l.Size); err != nil {
		return fmt.Errorf("diskimage: write partition table: %w", err)
	}
	esp, data, rootA := l.Partitions[0], l.Partitions[3], l.Partitions[1]
	if err := writeESP(c, b, esp); err != nil {
		return err
	}
	if err := copyAt(f, c.Root, int64(rootA.Start)*sector); err != nil {
		return fmt.Errorf("diskimage: write root-a: %w", err)
	}
	if _, err := fat32.Create(b, int64(data.Size), int64(data.Start)*sector, sector, DataLabel, true); err != nil {
		return fmt.Errorf("diskimage: format data partition: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// espFits checks that c's kernel and boot loader leave the ESP room for
// the other slot's kernel (ESPNeed): an update must not find it full.
func espFits(c Config) error {
	var size [2]int64
	for i, f := range []string{c.Kernel, c.Bootloader} {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("diskimage: %w", err)
		}
		size[i] = fi.Size()
	}
	if need := ESPNeed(size[0], size[1]); need > c.Arch.ESPSize {
		return fmt.Errorf("%w: kernel %s is %d bytes, two of them (the second 25 %% larger) and the boot loader need %d MiB, the %s ESP is %d MiB",
			errESPTooSmall, c.Kernel, size[0], (need+mib-1)/mib, c.Arch.Name, c.Arch.ESPSize/mib)
	}
	return nil
}

func writeESP(c Config, b backend.Storage, p *gpt.Partition) error {
	fsys, err := fat32.Create(b, int64(p.Size), int64(p.Start)*sector, sector, imagefile.ESPLabel, true)
	if err != nil {
		return fmt.Errorf("diskimage: format ESP: %w", err)
	}
	esp := imagefile.FATESP(fsys)
	for _, d := range []string{"EFI", "EFI/BOOT", "loader", bootslot.EntriesDir, "a", "b"} {
		if err := esp.MkdirAll(d); err != nil {
			return fmt.Errorf("diskimage: ESP mkdir %s: %w", d, err)
		}
	}
	for _, d := range []string{"EFI", "loader", "a", "b"} {
		if err := fixDotDot(fsys, b, int64(p.Start)*sector, d); err != nil {
			return fmt.Errorf("diskimage: ESP %s: %w", d, err)
		}
	}
	entry := bootslot.Entry{
		Title:   fmt.Sprintf("umedge %s (slot a)", c.Release),
		Version: c.Version,
		Linux:   "/" + bootslot.KernelPath("a"),
		Options: strings.TrimSpace(c.Arch.Cmdline("a") + " " + c.KernelArgs),
	}
	files := []struct {
		name string
		src  string
		data []byte
	}{
		{name: c.Arch.BootEFI, src: c.Bootloader},
		{name: "loader/loader.conf", data: []byte(bootslot.LoaderConf)},
		{name: bootslot.KernelPath("a"), src: c.Kernel},
		{name: path.Join(bootslot.EntriesDir, bootslot.BlessedName("a")), data: entry.Marshal()},
	}
	for _, fl := range files {
		data := fl.data
		if fl.src != "" {
			if data, err = os.ReadFile(fl.src); err != nil {
				return fmt.Errorf("diskimage: %w", err)
			}
		}
		if err := bootslot.WriteFile(esp, fl.name, data); err != nil {
			return fmt.Errorf("diskimage: ESP %s: %w", fl.name, err)
		}
	}
	return nil
}

// fixDotDot points the ".." entry of the top-level directory dir at
// cluster 0, as FAT wants for the root directory; go-diskfs v1.9.4 writes
// the root's cluster number there, which fsck.fat reports and "fixes".
func fixDotDot(fsys *fat32.FileSystem, b backend.Storage, fsStart int64, dir string) error {
	f, err := fsys.OpenFile(dir, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	ranged, ok := f.(interface {
		GetDiskRanges() ([]fat12.DiskRange, error)
	})
	if !ok {
		return errNoRanges
	}
	ranges, err := ranged.GetDiskRanges()
	if err != nil {
		return fmt.Errorf("locate directory: %w", err)
	}
	if len(ranges) == 0 {
		return fmt.Errorf("locate directory: %w", errNoRanges)
	}
	w, err := b.Writable()
	if err != nil {
		return err
	}
	at := fsStart + int64(ranges[0].Offset) + 32 // the second entry
	var entry [32]byte
	if _, err := w.ReadAt(entry[:], at); err != nil {
		return err
	}
	if string(entry[:11]) != "..         " {
		return fmt.Errorf("second directory entry is %q, %w", entry[:11], errNotDotDot)
	}
	clear(entry[20:22]) // first cluster, high word
	clear(entry[26:28]) // first cluster, low word
	_, err = w.WriteAt(entry[:], at)
	return err
}

func copyAt(f *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(io.NewOffsetWriter(f, off), in)
	return err
}

// inputSeed hashes everything the image is made of.
func inputSeed(c Config) ([32]byte, error) {
	h := sha256.New()
	fmt.Fprintf(h, "umedge-image\x00%s\x00%s\x00", c.Arch.Name, c.Release)
	_ = binary.Write(h, binary.LittleEndian, c.Version) // a hash.Hash never fails a write
	for _, p := range []string{c.Kernel, c.Bootloader, c.Root} {
		f, err := os.Open(p)
		if err != nil {
			return [32]byte{}, fmt.Errorf("diskimage: %w", err)
		}
		_, err = io.Copy(h, f)
		_ = f.Close()
		if err != nil {
			return [32]byte{}, fmt.Errorf("diskimage: read %s: %w", p, err)
		}
	}
	var seed [32]byte
	copy(seed[:], h.Sum(nil))
	return seed, nil
}

func restoreEnv(key string) func() {
	old, had := os.LookupEnv(key)
	return func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	}
}
