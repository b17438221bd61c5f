package main

import "errors"

// blesser marks the booted slot good on the ESP mounted at espDir:
// firmware/bootslot.Bless, through this interface so tests can watch it.
type blesser interface {
	Bless(espDir string) error
}

type blessFunc func(espDir string) error

func (f blessFunc) Bless(espDir string) error { return f(espDir) }

// errNoBootslot is what blessing does in a build without firmware/bootslot.
var errNoBootslot = errors.New("this build has no boot-slot support (firmware/bootslot); the slot stays on trial")

// defaultBlesser is replaced by bless_bootslot.go when firmware/bootslot
// is in the tree.
var defaultBlesser blesser = blessFunc(func(string) error { return errNoBootslot })
