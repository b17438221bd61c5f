package rootfs

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

// squashfs superblock fields (squashfs 4.0 on-disk format).
const (
	sbModTime   = 8  // uint32, seconds
	sbBytesUsed = 40 // uint64
)

// WriteSquashfs writes t as a zlib-compressed squashfs (the images'
// kernels, images/kernel's, read no other compression) to out and returns its size.
func WriteSquashfs(t *Tree, out string) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// The size is an upper bound go-diskfs checks writes against.
	sqfs, err := squashfs.Create(file.New(f, false), 1<<32, 0, 128<<10)
	if err != nil {
		return 0, fmt.Errorf("create squashfs: %w", err)
	}
	ws := sqfs.Workspace()
	defer os.RemoveAll(ws)
	if err := stage(t, ws); err != nil {
		return 0, err
	}
	root := uint32(0)
	err = sqfs.Finalize(squashfs.FinalizeOptions{
		Compression: &squashfs.CompressorGzip{CompressionLevel: 9, WindowSize: 15, Strategies: map[squashfs.GzipStrategy]bool{squashfs.GzipDefault: true}},
		FileUID:     &root,
		FileGID:     &root,
	})
	if err != nil {
		return 0, fmt.Errorf("finalize squashfs: %w", err)
	}
	// go-diskfs stamps the superblock with the wall clock; the image must
	// not depend on when it was built.
	var stamp [4]byte
	binary.LittleEndian.PutUint32(stamp[:], uint32(Epoch.Unix()))
	if _, err := f.WriteAt(stamp[:], sbModTime); err != nil {
		return 0, err
	}
	var used [8]byte
	if _, err := f.ReadAt(used[:], sbBytesUsed); err != nil {
		return 0, err
	}
	size := (int64(binary.LittleEndian.Uint64(used[:])) + 4095) &^ 4095
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	return size, f.Close()
}

// stage writes the tree into go-diskfs's workspace directory with fixed
// modes and times.
func stage(t *Tree, ws string) error {
	dirs := t.dirs()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil { //nolint:gosec // the rootfs image's directories are world-readable
			return err
		}
	}
	for _, fl := range t.sortedFiles() {
		data, err := fl.content()
		if err != nil {
			return err
		}
		p := filepath.Join(ws, fl.Path)
		if err := os.WriteFile(p, data, fl.Mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, fl.Mode.Perm()); err != nil {
			return err
		}
		if err := os.Chtimes(p, Epoch, Epoch); err != nil {
			return err
		}
	}
	for _, d := range append(dirs, "/") {
		p := filepath.Join(ws, d)
		if err := os.Chmod(p, 0o755); err != nil { //nolint:gosec // the rootfs image's directories are world-readable
			return err
		}
		if err := os.Chtimes(p, Epoch, Epoch); err != nil {
			return err
		}
	}
	return nil
}
