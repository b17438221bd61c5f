// Package sipptest runs SIPp scenarios against a SIP server and reports what happened.
//
// The scenarios live in scenarios/ and are embedded; they are Go templates
// that Run renders with its own fields (From user, extra headers, the
// expected Contact pattern, the accepted final codes) before SIPp reads
// them. Run.Exec starts one SIPp process, waits for it, and parses the
// statistics SIPp writes (-trace_stat, -trace_counts, -trace_error_codes)
// into a Result.
package sipptest

import (
	"fmt"
	"os/exec"
)

// Binary is the SIPp executable that Exec runs, looked up in PATH.
const Binary = "sipp"

// Logger receives progress lines from Exec. *testing.T and *testing.B
// satisfy it; a nil Logger is allowed.
type Logger interface {
	Logf(format string, args ...any)
}

// Available reports whether SIPp can be run: an error wrapping
// ErrNotInstalled when sipp is not in PATH. (Runs with Run.CPU set also
// need taskset, from util-linux.)
// Tests that need SIPp must fail, not skip, when it returns an error.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("%w: %w (apt-get install sip-tester)", ErrNotInstalled, err)
	}
	return nil
}

// Require fails t when SIPp is not installed: a test that needs it fails,
// never skips (make test installs sip-tester). t is a *testing.T or
// *testing.B (this package is linked into sipbench, not only tests).
func Require(t interface {
	Helper()
	Fatalf(format string, args ...any)
}) {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("SIPp is required (make test installs sip-tester): %v", err)
	}
}
