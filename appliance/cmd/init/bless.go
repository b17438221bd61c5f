package main

import "github.com/umedge/umedge/firmware/bootslot"

// blesser marks the booted slot good on the ESP mounted at espDir:
// firmware/bootslot.Bless, through this interface so tests can watch it.
type blesser interface {
	Bless(espDir string) error
}

type blessFunc func(espDir string) error

func (f blessFunc) Bless(espDir string) error { return f(espDir) }

var defaultBlesser blesser = blessFunc(bootslot.Bless)
