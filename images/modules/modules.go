// Package modules picks the kernel modules an image carries out of a
// kernel's module tree (/lib/modules/<release> of Debian's linux-image
// package): the named ones and everything they depend on, read from each
// .ko's .modinfo, and writes modules.dep and modules.alias for that
// subset, which appliance/kmod reads on the box (Debian's package ships
// neither: its postinst runs depmod).
package modules

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/umedge/umedge/appliance/kmod"
)

// ErrUnknown means a named module (or one it depends on) is not in the tree.
var ErrUnknown = errors.New("modules: no such module")

var errNotModule = errors.New("no .modinfo section (not a kernel module)")

// Info is what one module's .modinfo says.
type Info struct {
	Name    string
	File    string   // relative to the tree, slash-separated
	Depends []string // module names
	Aliases []string // modalias patterns
	// SoftPre are the names or aliases of "softdep=pre:": modules the
	// module needs loaded first but does not link against (libcrc32c
	// needs a crc32c implementation); without modprobe nobody else
	// loads them.
	SoftPre []string
}

// Selection is the modules an image carries.
type Selection struct {
	Release string // the tree's directory name: the kernel release
	Dir     string // the tree
	Modules []Info // sorted by file
}

// Select reads every .ko under dir and keeps names and their dependencies.
func Select(dir string, names []string) (*Selection, error) {
	all := map[string]Info{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := ReadInfo(p)
		if err != nil {
			return err
		}
		info.File = filepath.ToSlash(rel)
		all[info.Name] = info
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	s := &Selection{Release: filepath.Base(filepath.Clean(dir)), Dir: dir}
	keep := map[string]bool{}
	var add func(name, from string) error
	add = func(name, from string) error {
		name = kmod.Name(name)
		if keep[name] {
			return nil
		}
		info, ok := all[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("%w %s (needed by %s) in %s", ErrUnknown, name, from, dir)
			}
			return fmt.Errorf("%w %s in %s", ErrUnknown, name, dir)
		}
		keep[name] = true
		s.Modules = append(s.Modules, info)
		for _, d := range info.Depends {
			if err := add(d, name); err != nil {
				return err
			}
		}
		// A soft dependency is what the tree has of it, by name or
		// alias; none is fine (built in, or not needed here).
		for _, soft := range info.SoftPre {
			for _, m := range matching(all, soft) {
				if err := add(m, name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n, ""); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(s.Modules, func(a, b Info) int { return strings.Compare(a.File, b.File) })
	return s, nil
}

// matching returns the modules of all named name or with an alias
// matching it, sorted.
func matching(all map[string]Info, name string) []string {
	if _, ok := all[kmod.Name(name)]; ok {
		return []string{kmod.Name(name)}
	}
	var out []string
	for _, m := range all {
		for _, a := range m.Aliases {
			if ok, _ := path.Match(a, name); ok {
				out = append(out, m.Name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// ReadInfo reads a module file's .modinfo section.
func ReadInfo(file string) (Info, error) {
	f, err := elf.Open(file)
	if err != nil {
		return Info{}, fmt.Errorf("modules: %s: %w", file, err)
	}
	defer func() { _ = f.Close() }()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Info{}, fmt.Errorf("modules: %s: %w", file, errNotModule)
	}
	data, err := sec.Data()
	if err != nil {
		return Info{}, fmt.Errorf("modules: %s: .modinfo: %w", file, err)
	}
	info := Info{Name: kmod.Name(file)}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			info.Name = kmod.Name(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					info.Depends = append(info.Depends, kmod.Name(d))
				}
			}
		case "alias":
			info.Aliases = append(info.Aliases, v)
		case "softdep": // "pre: a b post: c"
			info.SoftPre = append(info.SoftPre, kmod.SoftPre(strings.Fields(v))...)
		}
	}
	return info, nil
}

// Names are the selected modules' names.
func (s *Selection) Names() []string {
	out := make([]string, len(s.Modules))
	for i, m := range s.Modules {
		out[i] = m.Name
	}
	return out
}

// Dep is the selection's modules.dep: "file: dependency files", the
// format of depmod(8).
func (s *Selection) Dep() []byte {
	files := map[string]string{}
	for _, m := range s.Modules {
		files[m.Name] = m.File
	}
	var b bytes.Buffer
	for _, m := range s.Modules {
		b.WriteString(m.File + ":")
		for _, d := range m.Depends {
			b.WriteString(" " + files[d])
		}
		b.WriteByte('\n')
	}
	return nonNil(b.Bytes())
}

// Softdep is the selection's modules.softdep: "softdep module pre: …".
func (s *Selection) Softdep() []byte {
	var b bytes.Buffer
	for _, m := range s.Modules {
		if len(m.SoftPre) > 0 {
			fmt.Fprintf(&b, "softdep %s pre: %s\n", m.Name, strings.Join(m.SoftPre, " "))
		}
	}
	return nonNil(b.Bytes())
}

// Alias is the selection's modules.alias: "alias PATTERN module".
func (s *Selection) Alias() []byte {
	var b bytes.Buffer
	for _, m := range s.Modules {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return nonNil(b.Bytes())
}

// nonNil: an empty file's content is empty, not absent (rootfs reads a
// File's Source when Data is nil).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
