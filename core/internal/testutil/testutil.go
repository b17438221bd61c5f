// Package testutil holds helpers shared by the core's tests.
package testutil

import (
	"bytes"
	"sync"
)

// LockedBuffer is a bytes.Buffer that concurrent writers (a logger, a
// child process's output) and a reading test may share.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
