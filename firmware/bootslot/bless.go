package bootslot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"unicode/utf16"
)

// loaderBootCountPath is the EFI variable in which systemd-boot leaves the
// ESP path of the entry it booted after counting the try (the vendor GUID
// is systemd-boot's).
const loaderBootCountPath = "/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// Bless marks the entry the running system booted from as good, on the ESP
// mounted at espDir: slot-x+LEFT-DONE.conf becomes slot-x.conf. The entry
// is found through LoaderBootCountPath (efivarfs mounted) or else through
// appliance.slot= on the kernel command line. Blessing an entry that is
// already blessed is not an error.
func Bless(espDir string) error {
	countPath, err := readBootCountPath(loaderBootCountPath)
	if err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	return BlessBooted(DirESP(espDir), countPath, CmdlineSlot(string(cmdline)))
}

// CmdlineSlot returns the value of appliance.slot= in a kernel command
// line, or "".
func CmdlineSlot(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "appliance.slot="); ok {
			return v
		}
	}
	return ""
}

// BlessBooted blesses the booted entry on esp: countPath is the ESP path
// systemd-boot reported (may be empty), slot the booted slot.
func BlessBooted(esp ESP, countPath, slot string) error {
	if err := CheckSlot(slot); err != nil {
		return err
	}
	file := ""
	if countPath != "" {
		file = path.Base(countPath)
		n, ok := ParseName(file)
		if !ok || n.Slot != slot {
			return fmt.Errorf("%w: LoaderBootCountPath %s is not an entry of slot %s", ErrNoBootedEntry, countPath, slot)
		}
	} else {
		entries, err := SlotEntries(esp, slot)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name.Counting {
				file = e.File
				break
			}
		}
	}
	blessed := path.Join(EntriesDir, BlessedName(slot))
	if file == "" || file == BlessedName(slot) {
		return checkExists(esp, blessed, slot)
	}
	err := esp.Rename(path.Join(EntriesDir, file), blessed)
	if errors.Is(err, fs.ErrNotExist) {
		return checkExists(esp, blessed, slot)
	}
	if err != nil {
		return fmt.Errorf("bless %s: %w", file, err)
	}
	return nil
}

func checkExists(esp ESP, name, slot string) error {
	r, err := esp.Open(name)
	if err != nil {
		return fmt.Errorf("%w: slot %s: %w", ErrNoBootedEntry, slot, err)
	}
	return r.Close()
}

// readBootCountPath reads an efivarfs file: 4 bytes of attributes, then a
// NUL-terminated UTF-16LE string. A missing variable (no efivarfs, or the
// booted entry had no counter) is "".
func readBootCountPath(file string) (string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read LoaderBootCountPath: %w", err)
	}
	return decodeEFIString(data)
}

func decodeEFIString(data []byte) (string, error) {
	if len(data) < 4 || (len(data)-4)%2 != 0 {
		return "", fmt.Errorf("LoaderBootCountPath: %w variable of %d bytes", ErrMalformed, len(data))
	}
	u := make([]uint16, 0, (len(data)-4)/2)
	for i := 4; i+1 < len(data); i += 2 {
		c := binary.LittleEndian.Uint16(data[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	s := string(utf16.Decode(u))
	return strings.TrimPrefix(strings.ReplaceAll(s, `\`, "/"), "/"), nil
}
