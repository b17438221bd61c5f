//go:build linux

package b2bua

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Found by attack: a full disk loses every later call detail record, even once
// space is back. flush() returns Encode's error without resetting the
// bufio.Writer (cdr.go:152-154; only a Flush error resets, cdr.go:156-157):
// a batch larger than the 4 KiB buffer fails inside Encode, and a
// bufio.Writer keeps its first error for ever, so every retry fails
// again, the queue only grows (memory), and Close reports the records
// "not written". The doc promises "a failing disk is … retried".
func TestAttackCDRFullDiskNeverRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })

	w, err := OpenCDR(filepath.Join(dir, "cdr.jsonl"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	const n = 40 // ~12 KiB of records: more than bufio's buffer
	for i := range n {
		w.Write(Record{CallID: "umedge-" + strings.Repeat("x", 24) + string(rune('a'+i%26)), Gateway: "gw", DialPlan: "dp",
			Pool: "um", Backend: "um1", From: "2001", To: "1001", Start: time.Now(), End: time.Now(), Status: 200,
			Reason: "callee hung up", LegA: LegInfo{Peer: "192.0.2.10:5060", CallID: "call-1"}, LegB: LegInfo{Peer: "203.0.113.5:5062"}})
	}
	time.Sleep(1500 * time.Millisecond) // the writer tried, failed, and retried the whole queue after 1 s
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // it retries after 1 s: space is back
	if err := w.Close(); err != nil {
		t.Errorf("Close after the disk had room again: %v", err)
	}
	cf, err := os.Open(filepath.Join(dir, "cdr.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	lines := 0
	for sc := bufio.NewScanner(cf); sc.Scan(); {
		lines++
	}
	if lines < n {
		t.Fatalf("%d of %d records on disk once it had room again", lines, n)
	}
}

// Records of calls that end close together share an fsync (group commit
// with a floor between syncs), and every one of them is written.
func TestCDRGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.jsonl")
	w, err := OpenCDR(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	start := time.Now()
	for i := range n {
		w.Write(Record{CallID: fmt.Sprintf("c%d", i), Reason: "test"})
		time.Sleep(100 * time.Microsecond) // 2,000–10,000 calls/s ending
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// One sync per 20 ms at most (syncEvery), plus the one Close makes.
	if max := uint64(took/(20*time.Millisecond)) + 2; w.syncs.Load() > max {
		t.Errorf("%d records in %v took %d fsyncs, want at most %d", n, took, w.syncs.Load(), max)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(data, []byte("\n")); lines != n {
		t.Errorf("%d lines written, want %d", lines, n)
	}
}
