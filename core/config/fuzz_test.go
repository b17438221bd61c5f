package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedFiles returns the shipped configs and the testdata inputs by name.
func seedFiles(t testing.TB) map[string][]byte {
	t.Helper()
	root := repoRoot(t)
	var paths []string
	for _, pattern := range []string{filepath.Join(root, "configs", "*.toml"), filepath.Join("testdata", "*.toml")} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no seed files found")
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Join(filepath.Base(filepath.Dir(p)), filepath.Base(p))] = data
	}
	return out
}

func FuzzLineIndex(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Add([]byte("a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{x={y={z=1}}}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"))
	f.Add([]byte("[[a]]\n[a.b]\n[[a]]\n[[a.b.c]]\n\"\\U0001F600\" = \"\"\"\"\"\"\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx := indexLines(data)
		lines := bytes.Count(data, []byte("\n")) + 1
		for path, n := range idx {
			if n < 1 || n > lines {
				t.Fatalf("index[%q] = %d, outside 1..%d", path, n, lines)
			}
		}
		checkIndexCoversKeys(t, data, idx)
	})
}

func FuzzLoad(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config with error %v", err)
			}
			ps := problems(err)
			if len(ps) == 0 {
				t.Fatalf("Parse error %v holds no *FieldError", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(*FieldError) failed on %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse succeeded but Validate() = %v", err)
		}
	})
}
