package logring

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/internal/apptest"
)

func TestRingKeepsTheLastBytes(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"fits", []string{"ab", "cd"}, "abcd"},
		{"exactly full", []string{"abc", "defgh"}, "abcdefgh"},
		{"wraps once", []string{"abcdef", "ghij"}, "cdefghij"},
		{"wraps many times", []string{"abc", "def", "ghi", "jkl", "mno"}, "hijklmno"},
		{"one write larger than the ring", []string{"x", "0123456789"}, "23456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(8, 1<<20)
			for _, w := range tt.writes {
				if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := string(r.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPersist: the boot's lines from before the data partition was
// mounted reach the file, later ones follow, the previous boot's file is
// kept, and the file rotates at its size limit.
func TestPersist(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Current), []byte("last boot\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	r := New(1<<10, 64)
	fmt.Fprintln(r, "early: mounted /proc")
	if err := r.Persist(filepath.Dir(dir), filepath.Base(dir)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(r, "later: edged started")

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(Current); got != "early: mounted /proc\nlater: edged started\n" {
		t.Errorf("%s = %q", Current, got)
	}
	if got := read(Previous); got != "last boot\n" {
		t.Errorf("%s = %q, want the last boot's log", Previous, got)
	}

	line := strings.Repeat("x", 30) + "\n"
	for range 4 {
		r.Write([]byte(line))
	}
	if got := read(Current); len(got) > 64 || !strings.HasSuffix(got, line) {
		t.Errorf("after 4 more lines %s holds %d bytes (limit 64): %q", Current, len(got), got)
	}
	if r.FileErr() != nil {
		t.Errorf("FileErr() = %v", r.FileErr())
	}
}

func TestConcurrentWrites(t *testing.T) {
	r := New(1<<16, 1<<20)
	if err := r.Persist(t.TempDir(), "log"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(r, "writer %d\n", i)
			}
		})
	}
	wg.Wait()
	if n := bytes.Count(r.Bytes(), []byte("\n")); n != 800 {
		t.Errorf("%d lines, want 800", n)
	}
}

// TestPersistRefusesSymlinksOut: a log directory, or a log file, on the
// data partition that is a symlink leading out of it is not written
// through; Persist says why and the ring goes on in memory.
func TestPersistRefusesSymlinksOut(t *testing.T) {
	t.Run("directory", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(data, "log")); err != nil {
			t.Fatal(err)
		}
		r := New(1<<10, 1<<20)
		fmt.Fprintln(r, "early")
		if err := r.Persist(data, "log"); err == nil {
			t.Error("Persist through a symlink out of the data partition succeeded")
		}
		fmt.Fprintln(r, "later")
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("log written outside the data partition: %v", ents)
		}
		if !bytes.Contains(r.Bytes(), []byte("later")) {
			t.Error("the ring stopped")
		}
	})
	t.Run("previous file", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Mkdir(filepath.Join(data, "log"), 0o750); err != nil {
			t.Fatal(err)
		}
		victim := filepath.Join(outside, "victim")
		if err := os.WriteFile(victim, []byte("keep\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, filepath.Join(data, "log", Current)); err != nil {
			t.Fatal(err)
		}
		r := New(1<<10, 64)
		if err := r.Persist(data, "log"); err != nil {
			t.Fatal(err)
		}
		for range 10 { // rotates a few times
			fmt.Fprintln(r, strings.Repeat("y", 30))
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
			t.Fatalf("a file outside the partition was written: %q", b)
		}
	})
}

// TestPersistOnAFullDisk: with the data partition full the ring goes on
// (Write neither fails nor blocks) and FileErr names the reason.
func TestPersistOnAFullDisk(t *testing.T) {
	data := apptest.SmallDisk(t, 64)
	r := New(1<<10, 48<<10)
	if err := r.Persist(data, "log"); err != nil {
		t.Fatal(err)
	}
	// Fill what the log does not use, then write more than is left.
	if err := os.WriteFile(filepath.Join(data, "filler"), make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("z", 99) + "\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 400 { // 40 KB: over the 24 KB left
			if n, err := r.Write(line); n != len(line) || err != nil {
				t.Errorf("Write() = %d, %v", n, err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocks on a full disk")
	}
	if err := r.FileErr(); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("FileErr() = %v, want the disk full", err)
	}
	if !bytes.HasSuffix(r.Bytes(), line) {
		t.Error("the ring lost the last lines")
	}
}
