// Package logring keeps the appliance's log: the last bytes in memory from
// the first line of boot on, and, once the data partition is mounted, in
// files under its log directory, rotated by size so the log never fills
// the partition.
package logring

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// File names under the log directory: the current file and the one before.
const (
	Current  = "umedge.log"
	Previous = "umedge.log.1"
)

// Ring is an io.Writer safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	buf     []byte // the last len(buf) bytes written, oldest first once full
	start   int    // where the oldest byte is, once full
	full    bool
	file    *os.File
	root    *os.Root // the data partition, after Persist
	dir     string   // the log directory inside root
	size    int64    // bytes in file
	maxFile int64
	fileErr error // the first failure to write the file; the ring goes on
}

// New returns a ring that keeps the last memBytes in memory and, after
// Persist, rotates its file at maxFile bytes.
func New(memBytes int, maxFile int64) *Ring {
	return &Ring{buf: make([]byte, 0, memBytes), maxFile: maxFile}
}

// Write keeps p and appends it to the file, if any. It never fails: the
// log must not stop the box; a file error is kept for FileErr.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.remember(p)
	if r.file != nil {
		r.append(p)
	}
	return len(p), nil
}

func (r *Ring) remember(p []byte) {
	c := cap(r.buf)
	if len(p) >= c {
		r.buf = append(r.buf[:0], p[len(p)-c:]...)
		r.start, r.full = 0, true
		return
	}
	if !r.full {
		if len(r.buf)+len(p) <= c {
			r.buf = append(r.buf, p...)
			return
		}
		n := c - len(r.buf)
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
		r.full = true
	}
	for len(p) > 0 {
		n := copy(r.buf[r.start:], p)
		p = p[n:]
		r.start = (r.start + n) % c
	}
}

// Bytes returns what the ring holds, oldest first.
func (r *Ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return bytes.Clone(r.buf)
	}
	return append(bytes.Clone(r.buf[r.start:]), r.buf[:r.start]...)
}

// Persist starts writing to logDir/umedge.log inside the data partition
// mounted at dataDir: first what the ring holds (the boot so far), then
// every Write. An existing file is rotated first, so each boot starts a
// file of its own and the previous boot's is kept. Every file is opened
// inside dataDir (os.Root): a symlink there that leads out of the
// partition is an error, never followed to write elsewhere.
func (r *Ring) Persist(dataDir, logDir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	if err := root.MkdirAll(logDir, 0o750); err != nil {
		_ = root.Close()
		return fmt.Errorf("log directory %s: %w", filepath.Join(dataDir, logDir), err)
	}
	if r.root != nil {
		_ = r.root.Close()
	}
	r.root, r.dir = root, logDir
	if err := r.rotate(); err != nil {
		return err
	}
	held := r.buf
	if r.full {
		held = append(bytes.Clone(r.buf[r.start:]), r.buf[:r.start]...)
	}
	r.append(held)
	return r.fileErr
}

// rotate moves the current file to Previous and opens a new one.
func (r *Ring) rotate() error {
	if r.file != nil {
		_ = r.file.Close() // written through append, which kept its errors
		r.file = nil
	}
	cur := filepath.Join(r.dir, Current)
	if err := r.root.Rename(cur, filepath.Join(r.dir, Previous)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate log: %w", err)
	}
	f, err := r.root.OpenFile(cur, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	r.file, r.size = f, 0
	return nil
}

func (r *Ring) append(p []byte) {
	if r.size+int64(len(p)) > r.maxFile && r.size > 0 {
		if err := r.rotate(); err != nil {
			r.keepErr(err)
			return
		}
	}
	n, err := r.file.Write(p)
	r.size += int64(n)
	if err != nil {
		r.keepErr(fmt.Errorf("write log: %w", err))
	}
}

func (r *Ring) keepErr(err error) {
	if r.fileErr == nil {
		r.fileErr = err
	}
}

// FileErr is the first failure to write the log file, or nil.
func (r *Ring) FileErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fileErr
}

// Sync flushes the file to the device, e.g. before a reboot.
func (r *Ring) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return nil
	}
	return r.file.Sync()
}
