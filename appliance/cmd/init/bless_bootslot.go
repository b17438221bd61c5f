//go:build bootslot

package main

import "github.com/umedge/umedge/firmware/bootslot"

// With firmware/bootslot merged, drop the build tag above: the init then
// blesses through it.
func init() { defaultBlesser = blessFunc(bootslot.Bless) }
