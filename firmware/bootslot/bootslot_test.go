package bootslot

import (
	"encoding/binary"
	"errors"
	"path"
	"slices"
	"testing"
	"unicode/utf16"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		give   string
		want   Name
		wantOK bool
	}{
		{give: "slot-a.conf", want: Name{Slot: "a"}, wantOK: true},
		{give: "slot-b+1-0.conf", want: Name{Slot: "b", Counting: true, Left: 1}, wantOK: true},
		{give: "slot-b+0-3.conf", want: Name{Slot: "b", Counting: true, Done: 3}, wantOK: true},
		{give: "slot-b+2.conf", want: Name{Slot: "b", Counting: true, Left: 2}, wantOK: true},
		{give: "slot-c.conf"},
		{give: "slot-a.new"},
		{give: "auto-efi-shell.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, ok := ParseName(tt.give)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseName(%q) = %+v, %v; want %+v, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
			if ok && got.String() != tt.give && tt.give != "slot-b+2.conf" {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
}

func newESP(t *testing.T, entries map[string]uint64) ESP {
	t.Helper()
	esp := DirESP(t.TempDir())
	if err := esp.MkdirAll(EntriesDir); err != nil {
		t.Fatal(err)
	}
	for file, version := range entries {
		n, _ := ParseName(file)
		e := Entry{Title: file, Version: version, Linux: "/" + KernelPath(n.Slot), Options: "appliance.slot=" + n.Slot}
		if err := WriteFile(esp, path.Join(EntriesDir, file), e.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	return esp
}

func TestDefault(t *testing.T) {
	tests := []struct {
		name    string
		give    map[string]uint64
		want    string
		wantErr error
	}{
		{name: "only a", give: map[string]uint64{"slot-a.conf": 1}, want: "slot-a.conf"},
		{name: "newer trial wins", give: map[string]uint64{"slot-a.conf": 1, "slot-b+1-0.conf": 2}, want: "slot-b+1-0.conf"},
		{name: "spent trial falls back", give: map[string]uint64{"slot-a.conf": 1, "slot-b+0-1.conf": 2}, want: "slot-a.conf"},
		{name: "newer blessed wins", give: map[string]uint64{"slot-a.conf": 1, "slot-b.conf": 2}, want: "slot-b.conf"},
		{name: "nothing left", give: map[string]uint64{"slot-b+0-1.conf": 2}, wantErr: ErrNoEntry},
		{name: "empty", give: map[string]uint64{}, wantErr: ErrNoEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Default(newESP(t, tt.give))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Default() = %v, want %v", err, tt.wantErr)
			}
			if e.File != tt.want {
				t.Fatalf("Default() = %s, want %s", e.File, tt.want)
			}
		})
	}
}

// TestTryOnceThenBless plays a good update: systemd-boot counts the try,
// the system blesses it, and the next boot stays.
func TestTryOnceThenBless(t *testing.T) {
	esp := newESP(t, map[string]uint64{"slot-a.conf": 1, "slot-b+1-0.conf": 2})
	e, err := TryBoot(esp)
	if err != nil || e.File != "slot-b+0-1.conf" {
		t.Fatalf("TryBoot() = %s, %v", e.File, err)
	}
	if err := BlessBooted(esp, "/loader/entries/slot-b+0-1.conf", "b"); err != nil {
		t.Fatal(err)
	}
	if err := BlessBooted(esp, "", "b"); err != nil {
		t.Fatalf("blessing twice: %v", err)
	}
	names, _ := esp.ReadDir(EntriesDir)
	slices.Sort(names)
	if !slices.Equal(names, []string{"slot-a.conf", "slot-b.conf"}) {
		t.Fatalf("entries %v", names)
	}
	if e, _ := TryBoot(esp); e.File != "slot-b.conf" {
		t.Fatalf("after bless boots %s", e.File)
	}
}

// TestTryOnceThenFallBack plays a bad update: the try is spent without a
// bless, so the next boot is slot A.
func TestTryOnceThenFallBack(t *testing.T) {
	esp := newESP(t, map[string]uint64{"slot-a.conf": 1, "slot-b+1-0.conf": 2})
	if _, err := TryBoot(esp); err != nil {
		t.Fatal(err)
	}
	e, err := TryBoot(esp)
	if err != nil || e.File != "slot-a.conf" {
		t.Fatalf("second boot = %s, %v; want slot-a.conf", e.File, err)
	}
}

func TestBlessErrors(t *testing.T) {
	esp := newESP(t, map[string]uint64{"slot-a.conf": 1})
	if err := BlessBooted(esp, "", "b"); !errors.Is(err, ErrNoBootedEntry) {
		t.Errorf("bless of a slot without entry = %v", err)
	}
	if err := BlessBooted(esp, `loader/entries/slot-a+0-1.conf`, "b"); !errors.Is(err, ErrNoBootedEntry) {
		t.Errorf("bless with another slot's count path = %v", err)
	}
	if err := BlessBooted(esp, "", "x"); !errors.Is(err, ErrBadSlot) {
		t.Errorf("bless of slot x = %v", err)
	}
	if err := BlessBooted(esp, "", "a"); err != nil {
		t.Errorf("bless of the blessed slot a = %v", err)
	}
}

func TestDecodeEFIString(t *testing.T) {
	s := `\loader\entries\slot-b+0-1.conf`
	b := make([]byte, 4)
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	got, err := decodeEFIString(b)
	if err != nil || got != "loader/entries/slot-b+0-1.conf" {
		t.Fatalf("decodeEFIString() = %q, %v", got, err)
	}
	if _, err := decodeEFIString([]byte{1, 2, 3}); err == nil {
		t.Error("a 3-byte variable decoded")
	}
}

func TestSlotOptions(t *testing.T) {
	got := SlotOptions("console=ttyS0 root=PARTLABEL=root-a ro appliance.slot=a", "b")
	if want := "console=ttyS0 ro root=PARTLABEL=root-b appliance.slot=b"; got != want {
		t.Fatalf("SlotOptions() = %q, want %q", got, want)
	}
}
