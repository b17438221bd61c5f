// Package base is the part of the plugin contract that every plugin kind
// shares: the go-plugin handshake, Info, Configure and Drain, and the
// services the host offers every plugin (HostServices).
package base

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/umedge/umedge/core/sdk/kind"
)

// APIVersion is the version of the plugin SDK contract. The host refuses a
// plugin whose Info reports another version. Version 2 carries the kind
// as an enum and adds Drain and the Host service.
const APIVersion = 2

// Kind names the role a plugin plays; the host dispenses the matching
// shim. It is kind.Kind, which code that only reads a config names
// without linking this package's gRPC machinery.
type Kind = kind.Kind

// The plugin kinds of DESIGN.md §2.
const (
	KindRouter      = kind.Router
	KindWorker      = kind.Worker
	KindIntegration = kind.Integration
)

// Info describes a plugin binary. The host checks it before Configure.
type Info struct {
	Kind       Kind
	Name       string // plugin ID, e.g. "um.router"
	Version    string // the plugin's own version
	APIVersion int    // the SDK APIVersion the plugin was built against
}

// Plugin is implemented by every plugin, whatever its kind.
type Plugin interface {
	// Info describes the plugin. It must not depend on configuration.
	Info(ctx context.Context) (*Info, error)
	// Configure hands the plugin its own TOML table (the bytes of
	// [plugins.<name>.settings]). It returns nil, or a *ConfigError that
	// lists every problem with its key path relative to that table. A
	// plugin that refuses a configuration keeps the one it had.
	Configure(ctx context.Context, settings []byte) error
}

// Drainer is implemented by plugins that hold work in flight beyond the
// call in progress (a worker's calls, an integration's sessions). The host
// calls Drain before it stops the process on a reload or shutdown; a
// plugin without it is treated as idle at once.
type Drainer interface {
	// Drain stops taking new work and waits for the work in flight. It
	// returns 0 and nil once the plugin is idle, or, when ctx ends first,
	// the number of items still in flight and ctx.Err(). The host ends
	// the process after Drain returns either way.
	Drain(ctx context.Context) (inFlight int, err error)
}

// DrainResult is what the host learns from Drain.
type DrainResult struct {
	Idle     bool // nothing was left in flight
	InFlight int  // items still in flight when the time was up
}

// Health is what a plugin reports about its own ability to work.
type Health struct {
	Degraded bool
	Reason   string // for the operator, e.g. "mail store unreachable"; "" when healthy
}

// HostServices is what the host offers every plugin process, reached over
// go-plugin's broker. Every call is attributed to the plugin instance.
// Calls fail with an error wrapping ErrUnavailable when the host cannot be
// reached.
type HostServices interface {
	// Log writes one line into edged's log at level, with slog-style
	// key-value args (or slog.Attr values); values are sent as text.
	Log(ctx context.Context, level slog.Level, msg string, args ...any) error
	// ReportHealth says whether the plugin can do its work. The last
	// report is shown in the host's status until the process ends.
	ReportHealth(ctx context.Context, h Health) error
}

// HostUser is implemented by plugins that use HostServices. The SDK calls
// UseHost once per process, before the first Configure, when the host
// offers its services (edged always does). Keep hs for the life of the
// process; it is safe for concurrent use.
type HostUser interface {
	UseHost(hs HostServices)
}

// Problem is one thing wrong with a plugin's settings.
type Problem struct {
	Path    string // key path inside the plugin's table, e.g. "gateway.lab.status"
	Message string // lowercase, no trailing punctuation
}

// ConfigError lists every problem a plugin found in its settings.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("%s: %s", e.Problems[0].Path, e.Problems[0].Message)
	}
	return fmt.Sprintf("%d problems in plugin settings, first %s: %s",
		len(e.Problems), e.Problems[0].Path, e.Problems[0].Message)
}
