package main

import (
	"testing"

	"github.com/umedge/umedge/core/sdk/router"
)

// A table with a proxy pool runs the collector at the B2BUA's pace, any
// other (none yet, redirect pools only) at the Call Router's.
func TestGCPercentFollowsProxyPools(t *testing.T) {
	redirect := router.Pool{Name: "um", Action: router.Redirect}
	unset := router.Pool{Name: "um2"} // the zero value redirects
	proxy := router.Pool{Name: "sbc", Action: router.Proxy}
	for _, c := range []struct {
		name string
		t    *router.Table
		want int
	}{
		{"no table", nil, gcPercentRouter},
		{"redirect pools", &router.Table{Pools: []router.Pool{redirect, unset}}, gcPercentRouter},
		{"one proxy pool", &router.Table{Pools: []router.Pool{redirect, proxy}}, gcPercentSBC},
	} {
		if got := gcPercent(c.t); got != c.want {
			t.Errorf("%s: GOGC %d, want %d", c.name, got, c.want)
		}
	}
}
