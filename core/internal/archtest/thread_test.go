package archtest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoThreadLockingInEdged keeps plugins alive as long as edged: the
// plugin host asks the kernel to kill a plugin when the thread that forked
// it exits (PR_SET_PDEATHSIG), and the Go runtime ends a thread only when a
// goroutine locked to it returns still locked. So no code that goes into
// edged or a plugin may lock a thread; tests may.
func TestNoThreadLockingInEdged(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	for _, dir := range []string{"core", "plugins"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(src, []byte("LockOSThread(")) {
				t.Errorf("%s locks an OS thread: a plugin forked from that thread would be killed when it ends", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
