// Package kmod loads Linux kernel modules the way modprobe does, for an
// appliance whose kernel has drivers as modules (Debian's) rather than
// built in (the images' own, images/kernel): a module's dependencies from modules.dep first,
// each with finit_module(2); names may be aliases from modules.alias
// (pci:v00001AF4d00001000…, fs-vfat); Coldplug loads the drivers of the
// devices sysfs shows. Depmod writes both files from the .ko files'
// .modinfo when an image is built, so the image needs no depmod binary.
//
// A kernel without a module directory (/lib/modules/<release>) has
// everything built in: Open returns ErrNoModules and the caller goes on.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors of Open and Load.
var (
	ErrNoModules = errors.New("kmod: no module directory")
	ErrUnknown   = errors.New("kmod: no such module")
	errCycle     = errors.New("kmod: dependency cycle")
	errMalformed = errors.New("kmod: malformed")
)

// Set is the modules of one kernel release.
type Set struct {
	dir     string
	files   map[string]string   // module name → file, relative to dir
	deps    map[string][]string // module name → names it needs
	aliases []alias
	softPre map[string][]string // module name → names or aliases to load before it, best effort
	loaded  map[string]bool     // inserted (or found loaded) through this Set
	trying  map[string]bool     // soft dependencies being loaded (a cycle stops)
	// Insert loads one module file; finit_module by default, replaced
	// in tests.
	Insert func(file string) error
}

type alias struct{ pattern, module string }

// Dir is the module directory of the running kernel under root ("/" on
// the box).
func Dir(root string) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("kmod: uname: %w", err)
	}
	return filepath.Join(root, "lib/modules", unix.ByteSliceToString(u.Release[:])), nil
}

// Name is a module's name from its file name: "kernel/net/8021q/8021q.ko"
// → "8021q", dashes as underscores as the kernel has them.
func Name(file string) string {
	base := path.Base(filepath.ToSlash(file))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// Open reads dir's modules.dep and, if there is one, modules.alias.
func Open(dir string) (*Set, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoModules, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	s := &Set{dir: dir, files: map[string]string{}, deps: map[string][]string{}, loaded: map[string]bool{}, softPre: map[string][]string{}, trying: map[string]bool{}}
	s.Insert = s.finit
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("%w %s/modules.dep:%d: no \"file:\" in %q", errMalformed, dir, n, line)
		}
		name := Name(file)
		s.files[name] = file
		for _, d := range strings.Fields(rest) {
			s.deps[name] = append(s.deps[name], Name(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: %s/modules.dep: %w", dir, err)
	}
	if err := s.readAliases(); err != nil {
		return nil, err
	}
	if err := s.readSoftdeps(); err != nil {
		return nil, err
	}
	return s, nil
}

// readSoftdeps reads modules.softdep's "softdep MODULE pre: A B post: C"
// lines; only the pre: part matters for loading.
func (s *Set) readSoftdeps() error {
	return s.eachLine("modules.softdep", func(f []string) error {
		if len(f) < 3 || f[0] != "softdep" {
			return fmt.Errorf("%w: want \"softdep MODULE pre: …\"", errMalformed)
		}
		s.softPre[Name(f[1])] = append(s.softPre[Name(f[1])], SoftPre(f[2:])...)
		return nil
	})
}

// SoftPre is the pre: part of a softdep's words ("pre: a b post: c").
func SoftPre(words []string) []string {
	var out []string
	pre := false
	for _, w := range words {
		switch w {
		case "pre:":
			pre = true
		case "post:":
			pre = false
		default:
			if pre {
				out = append(out, w)
			}
		}
	}
	return out
}

// eachLine calls fn with the fields of each line of the set's file name
// that is not empty or a comment; a missing file has no lines. An error
// of fn is returned naming the file and the line.
func (s *Set) eachLine(name string, fn func(f []string) error) error {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if err := fn(f); err != nil {
			return fmt.Errorf("kmod: %s/%s:%d: %q: %w", s.dir, name, n+1, line, err)
		}
	}
	return nil
}

func (s *Set) readAliases() error {
	return s.eachLine("modules.alias", func(f []string) error {
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("%w: want \"alias PATTERN MODULE\"", errMalformed)
		}
		if _, err := path.Match(f[1], ""); err != nil {
			return fmt.Errorf("pattern %q: %w", f[1], err)
		}
		s.aliases = append(s.aliases, alias{pattern: f[1], module: Name(f[2])})
		return nil
	})
}

// Has tells whether name is a module of the set (not an alias).
func (s *Set) Has(name string) bool {
	_, ok := s.files[Name(name)]
	return ok
}

// Lookup returns the modules name stands for: itself when it is a module,
// else those whose aliases match it (fnmatch, as modprobe), sorted.
func (s *Set) Lookup(name string) []string {
	if s.Has(name) {
		return []string{Name(name)}
	}
	var out []string
	for _, a := range s.aliases {
		// A modalias has no '/', so path.Match is fnmatch here.
		if ok, _ := path.Match(a.pattern, name); ok && !slices.Contains(out, a.module) {
			out = append(out, a.module)
		}
	}
	slices.Sort(out)
	return out
}

// Order returns the module files to insert for the modules names stand
// for, dependencies first, each once.
func (s *Set) Order(names ...string) ([]string, error) {
	var out []string
	done := map[string]bool{}
	active := map[string]bool{}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if done[name] {
			return nil
		}
		if active[name] {
			return fmt.Errorf("%w through %s", errCycle, name)
		}
		file, ok := s.files[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("%w %s (needed by %s) in %s", ErrUnknown, name, from, s.dir)
			}
			return fmt.Errorf("%w %s in %s", ErrUnknown, name, s.dir)
		}
		active[name] = true
		for _, d := range s.deps[name] {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		active[name] = false
		done[name] = true
		out = append(out, file)
		return nil
	}
	for _, n := range names {
		mods := s.Lookup(n)
		if len(mods) == 0 {
			return nil, fmt.Errorf("%w %s in %s", ErrUnknown, n, s.dir)
		}
		for _, m := range mods {
			if err := visit(m, ""); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Load inserts the modules names stand for and their dependencies. One
// already loaded is fine.
func (s *Set) Load(names ...string) error {
	files, err := s.Order(names...)
	if err != nil {
		return err
	}
	for _, f := range files {
		if s.loaded[Name(f)] {
			continue
		}
		s.loadSoft(Name(f))
		if err := s.Insert(f); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("kmod: load %s: %w", Name(f), err)
		}
		s.loaded[Name(f)] = true
	}
	return nil
}

// loadSoft loads name's soft pre-dependencies that the set has, as
// modprobe does; one that fails or is missing is not an error (a crc32c
// implementation for a CPU that lacks its instructions refuses to load,
// and the generic one does).
func (s *Set) loadSoft(name string) {
	for _, soft := range s.softPre[name] {
		for _, m := range s.Lookup(soft) {
			if s.loaded[m] || s.trying[m] {
				continue
			}
			s.trying[m] = true
			_ = s.Load(m)
			delete(s.trying, m)
		}
	}
}

// finit inserts one module file with finit_module(2); the kernel itself
// decompresses a compressed one (CONFIG_MODULE_DECOMPRESS).
func (s *Set) finit(file string) error {
	f, err := os.Open(filepath.Join(s.dir, file))
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(file, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	return unix.FinitModule(int(f.Fd()), "", flags)
}

// Coldplug loads the drivers for the devices under sysDevices
// (/sys/bus/*/devices on the box) by their modalias, again and again
// while that makes new devices appear (virtio_pci → the virtio devices
// → virtio_net), up to rounds times. It returns the modules it loaded;
// a modalias no module claims is left alone, and a module that fails to
// load is reported with the others still loaded.
func (s *Set) Coldplug(sysBus string, rounds int) ([]string, error) {
	var loaded []string
	tried := map[string]bool{}
	var errs []error
	for range rounds {
		aliases, _ := filepath.Glob(filepath.Join(sysBus, "*", "devices", "*", "modalias"))
		var want []string
		for _, p := range aliases {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			for _, m := range s.Lookup(strings.TrimSpace(string(data))) {
				if !tried[m] && !slices.Contains(want, m) {
					want = append(want, m)
				}
			}
		}
		if len(want) == 0 {
			break
		}
		slices.Sort(want)
		for _, m := range want {
			tried[m] = true
			if err := s.Load(m); err != nil {
				errs = append(errs, err)
				continue
			}
			loaded = append(loaded, m)
		}
	}
	return loaded, errors.Join(errs...)
}
