package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// starter is what edgedCheck needs of the reaper: as PID 1, init must not
// wait for a child itself, or it would race the reaper for the status.
type starter interface {
	Start(path string, argv []string, attr *os.ProcAttr) (int, <-chan syscall.WaitStatus, error)
}

// errCheck is what a file that edged's config check refuses gets.
var errCheck = errors.New("edged config check refused the file")

// checkTimeout bounds `edged config check`, which starts every plugin.
const checkTimeout = 30 * time.Second

// edgedCheck runs `edged config check file`: the same checks edged makes,
// plugin settings included, which the init's own config.Load cannot. A
// file that fails it is not applied.
func edgedCheck(ctx context.Context, s starter, edged, file string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("edged config check: %w", err)
	}
	defer r.Close()
	pid, exited, err := s.Start(edged, []string{edged, "config", "check", file},
		&os.ProcAttr{Env: []string{"PATH=/usr/bin:/bin", "TMPDIR=/tmp"}, Files: []*os.File{nil, w, w}})
	_ = w.Close() // the child has its copy
	if err != nil {
		return fmt.Errorf("edged config check: %w", err)
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, io.LimitReader(r, 64<<10)); close(copied) }()
	t := time.NewTimer(checkTimeout)
	defer t.Stop()
	var st syscall.WaitStatus
	select {
	case st = <-exited:
	case <-t.C:
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
		return fmt.Errorf("%w %s: no answer within %s", errCheck, file, checkTimeout)
	case <-ctx.Done():
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
		return ctx.Err()
	}
	select {
	case <-copied:
	case <-time.After(time.Second): // a plugin left behind may hold the pipe
	}
	if st.Exited() && st.ExitStatus() == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%s", errCheck, strings.TrimSpace(out.String()))
}
