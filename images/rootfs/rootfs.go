// Package rootfs lays out an appliance root file system and writes it as a
// squashfs image (the A/B root slots) or an LZ4 newc cpio archive (the
// initramfs of the fast qemu mode), byte for byte the same for the same
// inputs.
package rootfs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

var errBadPaths = errors.New("rootfs: bad or repeated paths")

// Epoch is the time stamp of every file, directory and superblock the
// package writes (FAT cannot date anything before 1980).
var Epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one regular file of the tree.
type File struct {
	Path string      // absolute, slash-separated: "/usr/bin/edged"
	Mode fs.FileMode // permission bits
	Data []byte      // content; Source is read instead when Data is nil
	// Source is a host file to copy.
	Source string
}

// Tree is a root file system to write: files (their parent directories are
// implied) and empty directories.
type Tree struct {
	Files []File
	Dirs  []string // absolute paths of directories that must exist, e.g. "/proc"
}

// Add appends a file copied from a host path.
func (t *Tree) Add(p string, mode fs.FileMode, source string) {
	t.Files = append(t.Files, File{Path: p, Mode: mode, Source: source})
}

// AddData appends a file with the given content.
func (t *Tree) AddData(p string, mode fs.FileMode, data []byte) {
	t.Files = append(t.Files, File{Path: p, Mode: mode, Data: data})
}

// check returns every bad path at once: relative, unclean or twice.
func (t *Tree) check() error {
	seen := map[string]bool{}
	var bad []string
	for _, f := range t.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" || seen[f.Path] {
			bad = append(bad, f.Path)
		}
		seen[f.Path] = true
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", errBadPaths, strings.Join(bad, ", "))
	}
	return nil
}

// dirs returns every directory the tree needs, sorted.
func (t *Tree) dirs() []string {
	set := map[string]bool{}
	add := func(d string) {
		for ; d != "/" && d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	for _, d := range t.Dirs {
		add(path.Clean(d))
	}
	for _, f := range t.Files {
		add(path.Dir(f.Path))
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func (t *Tree) sortedFiles() []File {
	files := slices.Clone(t.Files)
	slices.SortFunc(files, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	return files
}

func (f File) content() ([]byte, error) {
	if f.Data != nil {
		return f.Data, nil
	}
	b, err := os.ReadFile(f.Source)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", f.Path, err)
	}
	return b, nil
}
