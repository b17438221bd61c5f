//go:build !bootslot

package main

import (
	"errors"
	"testing"
)

// Without firmware/bootslot in the build, blessing fails and says why, so
// the slot is never taken for blessed.
func TestDefaultBlesserRefuses(t *testing.T) {
	if err := defaultBlesser.Bless("/boot"); !errors.Is(err, errNoBootslot) {
		t.Errorf("Bless = %v, want errNoBootslot", err)
	}
}
