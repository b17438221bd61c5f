package clock

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/internal/apptest"
)

// ntpEpoch is 1900-01-01, where NTP timestamps count from.
var ntpEpoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

func ntpTime(t time.Time) uint64 {
	d := t.Sub(ntpEpoch)
	sec := uint64(d / time.Second)
	frac := uint64(d%time.Second) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

// ntpServer answers NTPv4 client requests on loopback as a stratum-2
// server whose clock is ahead of ours by ahead; stratum 0 makes its
// answers kiss-of-death packets, which a client must refuse.
func ntpServer(t *testing.T, ahead time.Duration, stratum byte) string {
	t.Helper()
	return apptest.ServeUDP(t, "127.0.0.1:0", func(req []byte) []byte {
		if len(req) < 48 {
			return nil
		}
		now := time.Now().Add(ahead)
		resp := make([]byte, 48)
		resp[0] = 0<<6 | 4<<3 | 4 // no leap warning, version 4, server
		resp[1] = stratum
		resp[2] = 6                                                           // poll
		resp[3] = 0xec                                                        // precision 2^-20
		binary.BigEndian.PutUint32(resp[4:], 0x00000100)                      // root delay
		binary.BigEndian.PutUint32(resp[8:], 0x00000100)                      // root dispersion
		copy(resp[12:16], "GPS\x00")                                          // reference ID
		binary.BigEndian.PutUint64(resp[16:], ntpTime(now.Add(-time.Minute))) // reference time
		copy(resp[24:32], req[40:48])                                         // origin = the client's transmit time
		binary.BigEndian.PutUint64(resp[32:], ntpTime(now))                   // receive
		binary.BigEndian.PutUint64(resp[40:], ntpTime(now))                   // transmit
		return resp
	}).String()
}

func TestSyncOnce(t *testing.T) {
	var set []time.Time
	s := &Syncer{
		Servers: []string{
			"127.0.0.1:1", // nothing answers
			ntpServer(t, time.Hour, 0),
			ntpServer(t, time.Hour, 2),
		},
		Log: slog.New(slog.DiscardHandler),
		Set: func(t time.Time) error { set = append(set, t); return nil },
	}
	off, server, err := s.SyncOnce()
	if err != nil {
		t.Fatal(err)
	}
	if server != s.Servers[2] {
		t.Errorf("synced from %s, want the valid server %s", server, s.Servers[2])
	}
	if (off - time.Hour).Abs() > time.Second {
		t.Errorf("offset %v, want about 1h", off)
	}
	if len(set) != 1 || (time.Until(set[0])-time.Hour).Abs() > time.Second {
		t.Errorf("clock set to %v, want about an hour ahead", set)
	}

	// A clock that is right is left alone.
	set = nil
	s.Servers = []string{ntpServer(t, 0, 2)}
	if off, _, err := s.SyncOnce(); err != nil || off != 0 || len(set) != 0 {
		t.Errorf("in-sync clock: offset %v, err %v, set %v; want nothing done", off, err, set)
	}

	// No valid server: the error says so and names each server.
	s.Servers = []string{ntpServer(t, time.Hour, 0)}
	_, _, err = s.SyncOnce()
	if !errors.Is(err, ErrNoServer) {
		t.Errorf("SyncOnce = %v, want ErrNoServer", err)
	}
}

// TestRunTellsOfSteps: Run calls Stepped with the offset of each step
// it makes (the init renews a certificate made in 1970 from it), and not
// for an answer within MinStep.
func TestRunTellsOfSteps(t *testing.T) {
	for _, tt := range []struct {
		ahead time.Duration
		want  bool
	}{{2 * time.Hour, true}, {0, false}} {
		stepped := make(chan time.Duration, 1)
		s := &Syncer{Servers: []string{ntpServer(t, tt.ahead, 2)}, Log: slog.New(slog.DiscardHandler),
			Set:     func(time.Time) error { return nil },
			Stepped: func(off time.Duration) { stepped <- off }}
		ctx, cancel := context.WithCancel(context.Background())
		go s.Run(ctx)
		select {
		case off := <-stepped:
			if !tt.want || off < tt.ahead-time.Minute || off > tt.ahead+time.Minute {
				t.Errorf("server %v ahead: Stepped(%v)", tt.ahead, off)
			}
		case <-time.After(2 * time.Second):
			if tt.want {
				t.Errorf("server %v ahead: Stepped not called", tt.ahead)
			}
		}
		cancel()
	}
}

// TestSetRTC: a box without a hardware clock is fine; a device that is
// no RTC is an error naming it.
func TestSetRTC(t *testing.T) {
	dir := t.TempDir()
	if err := setRTC(filepath.Join(dir, "rtc0"), time.Now()); err != nil {
		t.Errorf("no RTC device: %v, want nil", err)
	}
	notRTC := filepath.Join(dir, "file")
	if err := os.WriteFile(notRTC, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := setRTC(notRTC, time.Now()); err == nil || !strings.Contains(err.Error(), notRTC) {
		t.Errorf("a plain file as the RTC: %v, want an error naming it", err)
	}
}
