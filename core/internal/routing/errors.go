package routing

import "errors"

var (
	// ErrNoBackend means no back end of the chosen pool is healthy (503 + Retry-After, R-CR-3).
	ErrNoBackend = errors.New("no-healthy-backend")
	// ErrRateLimited means the gateway exceeded its calls per second (503 + Retry-After).
	ErrRateLimited = errors.New("rate-limited")
	// ErrPluginUnavailable means the router plugin could not decide in time (503 + Retry-After).
	ErrPluginUnavailable = errors.New("plugin-unavailable")
	// ErrOverloaded means the queue of calls waiting for the plugin is full (503 + Retry-After).
	ErrOverloaded = errors.New("router-overloaded")
	// ErrBadDecision means the plugin named a pool its table does not have (500).
	ErrBadDecision = errors.New("bad-decision")
)
