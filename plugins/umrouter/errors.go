package main

import "errors"

var (
	// errNotConfigured means Route or Table ran before a successful
	// Configure; the core treats it as "could not decide" and never caches it.
	errNotConfigured = errors.New("umrouter: not configured")
	// errNilCall means Route was handed no call.
	errNilCall = errors.New("umrouter: nil call")
)
