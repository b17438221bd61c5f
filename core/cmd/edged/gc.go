package main

import (
	"os"
	"runtime/debug"
	"slices"

	"github.com/umedge/umedge/core/sdk/router"
)

// The collector's pace (GOGC) follows what the routing table makes edged
// do. The Call Router alone keeps little live (a table, a decision cache),
// so GOGC=50 keeps its peak RSS down for 5–20 % more CPU per call (main).
// The B2BUA keeps every ended call for 64×T1 to absorb retransmissions:
// ~100,000 calls at 3,000 calls/s, a live heap of hundreds of MiB that
// GOGC=50 has the collector mark again each time a half of it has been
// allocated anew. With a proxy pool in the table edged runs at Go's
// default, GOGC=100: BenchmarkCall (core/internal/b2bua) spends 35–40 %
// less CPU per call than at 50, for about a third more heap (docs/
// PERFORMANCE.md). The GOGC environment variable still wins.
const (
	gcPercentRouter = 50
	gcPercentSBC    = 100
)

// gcPercent is the GOGC for table t.
func gcPercent(t *router.Table) int {
	if t != nil && slices.ContainsFunc(t.Pools, func(p router.Pool) bool { return p.Action == router.Proxy }) {
		return gcPercentSBC
	}
	return gcPercentRouter
}

// tuneGC sets the collector's pace for the table in force, unless GOGC
// is set.
func (d *daemon) tuneGC() {
	if d.engine == nil || os.Getenv("GOGC") != "" {
		return
	}
	want := gcPercent(d.engine.Table())
	if old := d.gcPercent.Swap(int64(want)); old != int64(want) {
		debug.SetGCPercent(want)
		if old != 0 || want != gcPercentRouter { // main starts at the router's
			d.log.Info("garbage collector pace set", "gogc", want, "proxy_pools", want == gcPercentSBC)
		}
	}
}
