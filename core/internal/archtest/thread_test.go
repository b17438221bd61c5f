package archtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lockOK are the files of edged that lock a thread, each with why no
// thread of edged ends by it.
var lockOK = map[string]string{
	"core/internal/media/fastpath/fastpath.go": "inNS unlocks again; it leaves a thread locked (to end) only " +
		"when it switched namespaces and could not switch back, and it switches only for a caller in another " +
		"namespace than the program's (tests, mediabench), never in edged",
}

// TestNoThreadLockingInEdged keeps plugins alive as long as edged: the
// plugin host asks the kernel to kill a plugin when the thread that forked
// it exits (PR_SET_PDEATHSIG), and the Go runtime ends a thread only when a
// goroutine locked to it returns still locked. So the code built into
// edged and the plugins locks a thread only where lockOK says why that
// thread lives on; tests and test helpers may.
func TestNoThreadLockingInEdged(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}|{{join .GoFiles ","}}{{end}}`,
		"./core/cmd/edged", "./plugins/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, ok := strings.Cut(line, "|")
		if !ok || !strings.HasPrefix(dir, root+string(filepath.Separator)) || files == "" {
			continue // a module dependency, not ours
		}
		for _, f := range strings.Split(files, ",") {
			path := filepath.Join(dir, f)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			n++
			rel, _ := filepath.Rel(root, path)
			if _, ok := lockOK[filepath.ToSlash(rel)]; !ok && bytes.Contains(src, []byte("LockOSThread(")) {
				t.Errorf("%s locks an OS thread: a plugin forked from that thread would be killed when it ends", rel)
			}
		}
	}
	if n < 50 {
		t.Fatalf("read only %d files of edged and the plugins: the package list is wrong", n)
	}
}
