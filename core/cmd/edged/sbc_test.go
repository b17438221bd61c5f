package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// Every [media] key reaches the media engine's configuration.
func TestMediaConfigFromKeys(t *testing.T) {
	m := config.Media{PortMin: 20000, PortMax: 20999, Workers: 3, LatchWindow: config.Duration{Duration: 7 * time.Second},
		InactivityTimeout: config.Duration{Duration: 42 * time.Second}, IdlePairs: 123, FastPath: "tc"}
	got := mediaConfig(m)
	want := media.Config{PortMin: 20000, PortMax: 20999, Workers: 3, LatchWindow: 7 * time.Second,
		InactivityTimeout: 42 * time.Second, IdlePairs: 123, FastPath: fastpath.TC}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mediaConfig(%+v) =\n%+v, want\n%+v", m, got, want)
	}
}
