// Package base is the part of the plugin contract that every plugin kind
// shares: the go-plugin handshake, Info and Configure.
package base

import (
	"context"
	"fmt"
)

// APIVersion is the version of the plugin SDK contract. The host refuses a
// plugin whose Info reports another major version.
const APIVersion = 1

// Kind names the role a plugin plays; the host dispenses the matching shim.
type Kind string

// The plugin kinds of DESIGN.md §2.
const (
	KindRouter      Kind = "router"
	KindWorker      Kind = "worker"
	KindIntegration Kind = "integration"
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
