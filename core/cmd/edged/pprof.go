//go:build pprof

package main

// A profiling build (go build -tags pprof): with EDGED_PPROF set to a
// loopback address, edged serves net/http/pprof there, apart from the
// admin API, so that a benchmark can take CPU and allocation profiles of
// the daemon under load. Release builds carry none of it.

import (
	"net/http"
	_ "net/http/pprof" // registers on http.DefaultServeMux
	"os"
)

func init() {
	if addr := os.Getenv("EDGED_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
