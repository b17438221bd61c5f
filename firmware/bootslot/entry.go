package bootslot

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// EntriesDir is where systemd-boot looks for Type #1 entries on the ESP.
const EntriesDir = "loader/entries"

// LoaderConf is loader/loader.conf: boot the best slot-* entry at once. The
// pattern keeps systemd-boot's own entries (firmware setup, shells) from
// ever being the default.
const LoaderConf = "timeout 0\ndefault slot-*\neditor no\n"

// Slots are the two root slots.
var Slots = []string{"a", "b"}

// CheckSlot reports whether slot is "a" or "b".
func CheckSlot(slot string) error {
	if slot != "a" && slot != "b" {
		return fmt.Errorf("%w: %q", ErrBadSlot, slot)
	}
	return nil
}

// Other returns the slot that is not slot.
func Other(slot string) (string, error) {
	switch slot {
	case "a":
		return "b", nil
	case "b":
		return "a", nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadSlot, slot)
}

// KernelPath is where slot's kernel lives on the ESP.
func KernelPath(slot string) string { return slot + "/vmlinuz" }

// PartLabel is the GPT partition name of slot's root file system.
func PartLabel(slot string) string { return "root-" + slot }

// Name is an entry's file name taken apart: slot-b+1-0.conf is slot b on
// trial with 1 try left and none done; slot-b.conf is slot b blessed.
type Name struct {
	Slot     string
	Counting bool // the name carries a boot counter: the slot is on trial
	Left     int  // tries left (Counting only)
	Done     int  // tries done (Counting only)
}

var nameRE = regexp.MustCompile(`^slot-([ab])(?:\+([0-9]+)(?:-([0-9]+))?)?\.conf$`)

// ParseName parses an entry file name; ok is false for files that are not
// slot entries.
func ParseName(file string) (n Name, ok bool) {
	m := nameRE.FindStringSubmatch(file)
	if m == nil {
		return Name{}, false
	}
	n.Slot = m[1]
	if m[2] != "" {
		n.Counting = true
		left, err := strconv.Atoi(m[2])
		if err != nil {
			return Name{}, false
		}
		n.Left = left
		if m[3] != "" {
			done, err := strconv.Atoi(m[3])
			if err != nil {
				return Name{}, false
			}
			n.Done = done
		}
	}
	return n, true
}

// TrialName is the file name of slot's entry with tries tries left.
func TrialName(slot string, tries int) string {
	return fmt.Sprintf("slot-%s+%d-0.conf", slot, tries)
}

// BlessedName is the file name of slot's blessed entry.
func BlessedName(slot string) string { return "slot-" + slot + ".conf" }

// String is the file name n was parsed from.
func (n Name) String() string {
	if !n.Counting {
		return BlessedName(n.Slot)
	}
	return fmt.Sprintf("slot-%s+%d-%d.conf", n.Slot, n.Left, n.Done)
}

// Entry is the content of one of our Type #1 entries.
type Entry struct {
	Title   string
	Version uint64 // the bundle's monotonic version; the higher good entry is the default
	Linux   string // kernel path on the ESP, with a leading slash
	Options string // kernel command line
}

// sortKey is the same for every slot so that version decides.
const sortKey = "umedge"

// Marshal renders e in the Boot Loader Specification's key-value format.
func (e Entry) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "title %s\n", e.Title)
	fmt.Fprintf(&b, "sort-key %s\n", sortKey)
	fmt.Fprintf(&b, "version %d\n", e.Version)
	fmt.Fprintf(&b, "linux %s\n", e.Linux)
	fmt.Fprintf(&b, "options %s\n", e.Options)
	return b.Bytes()
}

// ParseEntry reads an entry written by Marshal (unknown keys are kept out,
// not refused: systemd-boot knows more keys than we write).
func ParseEntry(data []byte) (Entry, error) {
	var e Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		value = strings.TrimSpace(value)
		switch key {
		case "title":
			e.Title = value
		case "version":
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return Entry{}, fmt.Errorf("entry version %q: %w", value, err)
			}
			e.Version = v
		case "linux":
			e.Linux = value
		case "options":
			e.Options = value
		}
	}
	if err := sc.Err(); err != nil {
		return Entry{}, fmt.Errorf("read entry: %w", err)
	}
	if e.Linux == "" {
		return Entry{}, fmt.Errorf("%w: entry has no linux line", ErrMalformed)
	}
	return e, nil
}

// SlotOptions returns opts with the root= and appliance.slot= arguments
// pointing at slot, so that the other slot's command line serves for a new
// entry.
func SlotOptions(opts, slot string) string {
	fields := strings.Fields(opts)
	out := fields[:0]
	for _, f := range fields {
		if strings.HasPrefix(f, "root=") || strings.HasPrefix(f, "appliance.slot=") {
			continue
		}
		out = append(out, f)
	}
	out = append(out, "root=PARTLABEL="+PartLabel(slot), "appliance.slot="+slot)
	return strings.Join(out, " ")
}
