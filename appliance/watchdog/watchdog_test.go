package watchdog

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/internal/apptest"
)

// A regular file stands in for /dev/watchdog: every pet is a byte in it.
func TestKeepPetsOnlyWhileHealthy(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		d.Keep(ctx, 5*time.Millisecond, healthy.Load, func(err error) { t.Error(err) })
		close(done)
	}()
	size := func() int64 {
		fi, err := os.Stat(dev)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	apptest.WaitFor(t, func() bool { return size() >= 3 }, "three pets while healthy")

	healthy.Store(false)
	time.Sleep(20 * time.Millisecond) // a pet under way may still land
	before := size()
	time.Sleep(50 * time.Millisecond)
	if after := size(); after != before {
		t.Errorf("petted %d times while unhealthy", after-before)
	}

	healthy.Store(true)
	apptest.WaitFor(t, func() bool { return size() > before }, "pets again once healthy")
	cancel()
	<-done
	if err := d.Disarm(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dev)
	if b[len(b)-1] != 'V' {
		t.Errorf("Disarm wrote %q last, want the magic 'V'", b[len(b)-1])
	}
}

func TestOpenMissingDevice(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Open of a missing device succeeded")
	}
}
