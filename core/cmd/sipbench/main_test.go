package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary be the Go UAC child that measure starts
// (see uacChild).
func TestMain(m *testing.M) {
	uacChild()
	os.Exit(m.Run())
}
