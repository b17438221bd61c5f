package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type fakeBlesser struct {
	dirs []string
	err  error
}

func (f *fakeBlesser) Bless(dir string) error {
	f.dirs = append(f.dirs, dir)
	return f.err
}

func testBox(out io.Writer) *box {
	o := defaultOptions()
	return &box{o: o, out: out, log: slog.New(slog.DiscardHandler), slot: "b", bootStart: time.Now()}
}

func TestBless(t *testing.T) {
	var out bytes.Buffer
	b := testBox(&out)
	f := &fakeBlesser{}
	b.blesser = f

	b.bless() // no ESP mounted (kernel+initramfs boot): nothing to bless
	if len(f.dirs) != 0 {
		t.Errorf("blessed without an ESP: %v", f.dirs)
	}
	b.esp = true
	b.bless()
	if len(f.dirs) != 1 || f.dirs[0] != "/boot" || !strings.Contains(out.String(), "UMEDGE BLESSED slot=b") {
		t.Errorf("bless: dirs %v, console %q", f.dirs, out.String())
	}
	out.Reset()
	f.err = errors.New("entry slot-b+0-3.conf not found")
	b.bless()
	if !strings.Contains(out.String(), "UMEDGE BLESS ERROR slot=b: entry slot-b+0-3.conf not found") {
		t.Errorf("bless failure on the console: %q", out.String())
	}
}

func TestWantPet(t *testing.T) {
	b := testBox(io.Discard)
	if !b.wantPet() {
		t.Error("no pet during the first boot minutes, before the first health check")
	}
	b.bootStart = time.Now().Add(-10 * time.Minute)
	if b.wantPet() {
		t.Error("pets a box that never became healthy")
	}
	b.healthy.Store(true)
	b.lastGood.Store(time.Now().UnixNano())
	if !b.wantPet() {
		t.Error("no pet right after a passed health check")
	}
	b.lastGood.Store(time.Now().Add(-time.Minute).UnixNano())
	if b.wantPet() {
		t.Error("pets a box whose last passed check is a minute old")
	}
}
