// Package kind names the plugin kinds of DESIGN.md §2. It imports
// nothing, so that code which only reads a config (core/config, and
// through it the appliance's init) can name a kind without linking the
// SDK's gRPC and go-plugin machinery; core/sdk/base re-exports these.
package kind

// Kind names the role a plugin plays; the host dispenses the matching shim.
type Kind string

// The plugin kinds.
const (
	Router      Kind = "router"
	Worker      Kind = "worker"
	Integration Kind = "integration"
)
