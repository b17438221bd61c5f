package sipptest

import "errors"

var (
	// ErrNotInstalled means the sipp binary is not in PATH.
	ErrNotInstalled = errors.New("sipptest: sipp is not installed")
	// ErrInvalidRun means a Run field is missing or out of range.
	ErrInvalidRun = errors.New("sipptest: invalid run")
	// ErrUnknownScenario means Run.Scenario names neither an embedded
	// scenario nor a readable file.
	ErrUnknownScenario = errors.New("sipptest: unknown scenario")
	// ErrTimeout means SIPp did not finish within Run.Timeout.
	ErrTimeout = errors.New("sipptest: sipp timed out")
	// ErrSIPp means SIPp exited with a fatal status (bad arguments, a
	// scenario it could not load, a socket it could not bind).
	ErrSIPp = errors.New("sipptest: sipp failed")
	// ErrNoStats means SIPp left no statistics file to read.
	ErrNoStats = errors.New("sipptest: no sipp statistics")
	// ErrInvalidMix means a Mix asks for a directory or a call count the
	// mix cannot have.
	ErrInvalidMix = errors.New("sipptest: invalid mix")
)
