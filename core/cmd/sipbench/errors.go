package main

import "errors"

var (
	// errNoKamailioModules means no Kamailio module directory was found.
	errNoKamailioModules = errors.New("sipbench: kamailio modules not found")
	// errNotReady means a server did not become ready in time.
	errNotReady = errors.New("sipbench: server not ready")
	// errExited means a server process ended while it was being measured.
	errExited = errors.New("sipbench: server exited")
	// errBadFlag means a flag value is out of range.
	errBadFlag = errors.New("sipbench: bad flag")
	// errBadMix means the mix settings lack the router's table.
	errBadMix = errors.New("sipbench: bad mix settings")
)
