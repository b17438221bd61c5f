// Package clock sets the appliance's clock from NTP servers
// (github.com/beevik/ntp). Boxes without a battery-backed clock boot in
// 1970; TLS certificates and logs need the real time.
package clock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// Syncer queries Servers in turn and steps the clock by the first valid
// answer's offset.
type Syncer struct {
	Servers []string // "host" or "host:port"
	Log     *slog.Logger

	// MinStep: offsets smaller than this are left alone.
	MinStep time.Duration
	// Interval between syncs after a success; a failure retries sooner.
	Interval time.Duration

	// Set and Query default to setting the system clock and to a real NTP
	// query; tests replace them.
	Set   func(time.Time) error
	Query func(server string) (*ntp.Response, error)

	// Stepped, when set, is called after each step of the clock with its
	// offset (the init renews a device certificate made while the clock
	// was wrong).
	Stepped func(offset time.Duration)
}

// Defaults for a Syncer's zero fields.
const (
	defaultMinStep  = 128 * time.Millisecond // ntpd's step threshold
	defaultInterval = 15 * time.Minute
	retryMin        = 5 * time.Second
)

// ErrNoServer means no server gave a valid answer.
var ErrNoServer = errors.New("clock: no NTP server gave a valid answer")

// SyncOnce sets the clock from the first server that answers validly and
// returns the offset it applied (0 when below MinStep) and that server.
func (s *Syncer) SyncOnce() (time.Duration, string, error) {
	query, set := s.Query, s.Set
	if query == nil {
		query = func(server string) (*ntp.Response, error) {
			return ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: 3 * time.Second})
		}
	}
	if set == nil {
		set = setSystemClock(s.Log)
	}
	minStep := s.MinStep
	if minStep == 0 {
		minStep = defaultMinStep
	}
	var errs []error
	for _, server := range s.Servers {
		resp, err := query(server)
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		off := resp.ClockOffset
		if off.Abs() < minStep {
			return 0, server, nil
		}
		if err := set(time.Now().Add(off)); err != nil {
			return 0, server, fmt.Errorf("clock: set the time from %s: %w", server, err)
		}
		return off, server, nil
	}
	return 0, "", errors.Join(append([]error{ErrNoServer}, errs...)...)
}

// Run syncs now and then every Interval until ctx ends; after a failure it
// retries sooner, backing off from 5 s up to Interval.
func (s *Syncer) Run(ctx context.Context) {
	if len(s.Servers) == 0 {
		return
	}
	interval := s.Interval
	if interval == 0 {
		interval = defaultInterval
	}
	retry := retryMin
	for {
		next := interval
		off, server, err := s.SyncOnce()
		switch {
		case err != nil:
			s.Log.Warn("time sync failed", "err", err, "retry_in", retry)
			next, retry = retry, min(2*retry, interval)
		case off != 0:
			s.Log.Info("clock stepped", "server", server, "offset", off)
			retry = retryMin
			if s.Stepped != nil {
				s.Stepped(off)
			}
		default:
			retry = retryMin
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// setSystemClock sets the system clock to t and then the hardware clock
// (rtcDevice, kept in UTC), so that the next boot starts from the right
// time before NTP answers: the kernel writes the RTC back by itself only
// for a clock disciplined through adjtimex, not for a step. A hardware
// clock that cannot be written is logged, not a failed sync.
func setSystemClock(log *slog.Logger) func(time.Time) error {
	return func(t time.Time) error {
		ts := unix.NsecToTimespec(t.UnixNano())
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return err
		}
		if err := setRTC(rtcDevice, t); err != nil {
			log.Warn("the next boot starts from the old time", "err", err)
		}
		return nil
	}
}

// rtcDevice is the hardware clock.
const rtcDevice = "/dev/rtc0"

// setRTC writes t, in UTC, to the RTC device dev; a box without one (no
// such device) is fine.
func setRTC(dev string, t time.Time) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clock: hardware clock: %w", err)
	}
	defer f.Close()
	u := t.UTC()
	rt := unix.RTCTime{Sec: int32(u.Second()), Min: int32(u.Minute()), Hour: int32(u.Hour()), //nolint:gosec // calendar fields
		Mday: int32(u.Day()), Mon: int32(u.Month()) - 1, Year: int32(u.Year()) - 1900} //nolint:gosec // as above
	if err := unix.IoctlSetRTCTime(int(f.Fd()), &rt); err != nil { //nolint:gosec // a descriptor
		return fmt.Errorf("clock: set %s: %w", dev, err)
	}
	return nil
}
