// Package watchdog keeps a Linux hardware watchdog (/dev/watchdog) from
// resetting the box while the box is healthy. Once the device is open the
// timer runs: if the keeper stops petting it, because the health check
// fails or because the init hangs, the hardware reboots the box.
package watchdog

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Dog is an open watchdog device.
type Dog struct {
	f *os.File
}

// Open opens the device, which arms it.
func Open(path string) (*Dog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w", path, err)
	}
	return &Dog{f: f}, nil
}

// Pet restarts the device's timer.
func (d *Dog) Pet() error {
	if _, err := d.f.Write([]byte{0}); err != nil {
		return fmt.Errorf("pet watchdog: %w", err)
	}
	return nil
}

// Disarm stops the timer (the "magic close": 'V' before close) for an
// orderly shutdown. Kernels built with nowayout ignore it.
func (d *Dog) Disarm() error {
	_, err := d.f.Write([]byte("V"))
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Keep pets the dog every interval for as long as healthy says so, until
// ctx ends. While healthy returns false it does not pet, and the hardware
// resets the box when its timeout passes.
func (d *Dog) Keep(ctx context.Context, interval time.Duration, healthy func() bool, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if healthy() {
			if err := d.Pet(); err != nil {
				onErr(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
