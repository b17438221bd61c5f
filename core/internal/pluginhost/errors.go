package pluginhost

import (
	"errors"
	"fmt"

	"github.com/umedge/umedge/core/sdk/base"
)

var (
	// ErrBadSums means the sha256sums file has a line that is not "HEX  NAME".
	ErrBadSums = errors.New("pluginhost: malformed sha256sums line")
	// ErrNotRunning means a plugin is not running right now (starting, in
	// backoff, failed, stopped or not configured). It wraps
	// base.ErrUnavailable, so callers branch on either.
	ErrNotRunning = fmt.Errorf("pluginhost: plugin not running: %w", base.ErrUnavailable)
	// ErrNoPin means neither Spec.SHA256 nor the SHA256Sums file pins the
	// binary; the host refuses to execute unpinned code.
	ErrNoPin = errors.New("pluginhost: binary not pinned by sha256")
	// ErrChecksumMismatch means the binary's SHA-256 is not the pinned one.
	ErrChecksumMismatch = errors.New("pluginhost: sha256 mismatch")
	// ErrKindMismatch means the plugin's Info reports another kind than its Spec.
	ErrKindMismatch = errors.New("pluginhost: plugin kind mismatch")
	// ErrAPIVersion means the plugin was built against another SDK API version.
	ErrAPIVersion = errors.New("pluginhost: unsupported plugin api version")
	// ErrClosed means the Host was closed.
	ErrClosed = errors.New("pluginhost: host closed")
)

var (
	errBadBinary   = errors.New("pluginhost: binary must be a plain file name")
	errBadPin      = errors.New("pluginhost: sha256 pin must be 64 hex digits")
	errBadKind     = errors.New("pluginhost: no shim for plugin kind")
	errDuplicate   = errors.New("pluginhost: duplicate plugin name")
	errNoName      = errors.New("pluginhost: plugin name is empty")
	errBadName     = errors.New("pluginhost: bad plugin or instance name")
	errAlreadyUsed = errors.New("pluginhost: plugin already started")
	errBadDispense = errors.New("pluginhost: dispensed plugin has wrong type")
	errExitedEarly = errors.New("pluginhost: plugin exited before the handshake")
	errNotServing  = errors.New("pluginhost: plugin health service is not serving")
)

// ReconfigureError names the plugin whose change made Reconfigure fail.
// Every change already applied was rolled back. Err may be a
// *base.ConfigError listing what the plugin refused.
type ReconfigureError struct {
	Plugin string
	Err    error
}

func (e *ReconfigureError) Error() string {
	return fmt.Sprintf("reconfigure plugin %s: %v", e.Plugin, e.Err)
}

func (e *ReconfigureError) Unwrap() error { return e.Err }
