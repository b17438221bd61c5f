// Package apptest holds small helpers the appliance's tests share.
package apptest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test after 5 seconds
// with what it was waiting for.
func WaitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
