package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mount is one of the file systems the kernel leaves to init.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	optional               bool // skipped when the target does not exist
}

var earlyMounts = []mount{
	{source: "proc", target: "/proc", fstype: "proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{source: "sysfs", target: "/sys", fstype: "sysfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: unix.MS_NOSUID, data: "mode=0755"},
	{source: "tmpfs", target: "/run", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=0755,size=32m"},
	{source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777,size=64m"},
	{source: "efivarfs", target: "/sys/firmware/efi/efivars", fstype: "efivarfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
}

// mountEarly mounts earlyMounts. A file system already there (the kernel
// mounts devtmpfs itself with CONFIG_DEVTMPFS_MOUNT) is fine.
func mountEarly() []error {
	var errs []error
	for _, m := range earlyMounts {
		if _, err := os.Stat(m.target); err != nil {
			if m.optional {
				continue
			}
			if err := os.MkdirAll(m.target, 0o755); err != nil { //nolint:gosec // /proc, /sys, /run… must be traversable by all
				errs = append(errs, fmt.Errorf("mount %s: %w", m.target, err))
				continue
			}
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errs
}

// Why a partition was not found by its label.
var (
	errNoPartition    = errors.New("no partition labelled")
	errManyPartitions = errors.New("more than one partition labelled")
)

// findByLabel returns the device node of the GPT partition labelled label,
// from the PARTNAME= line of each block device's uevent under sysBlock
// (/sys/class/block). Partitions may take a moment to appear at boot, so
// it waits up to wait.
func findByLabel(sysBlock, label string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		devs, _ := filepath.Glob(filepath.Join(sysBlock, "*", "uevent"))
		var found []string
		for _, ue := range devs {
			data, err := os.ReadFile(ue)
			if err != nil {
				continue
			}
			var name, part string
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "DEVNAME="); ok {
					name = v
				}
				if v, ok := strings.CutPrefix(line, "PARTNAME="); ok {
					part = v
				}
			}
			if part == label && name != "" {
				found = append(found, "/dev/"+name)
			}
		}
		switch {
		case len(found) == 1:
			return found[0], nil
		case len(found) > 1:
			return "", fmt.Errorf("%w %q (%s); refusing to guess", errManyPartitions, label, strings.Join(found, ", "))
		case time.Now().After(deadline):
			return "", fmt.Errorf("%w %q", errNoPartition, label)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mountData are the mount options per file system. FAT has no owners or
// modes: every file is root's and private (the device key lives there),
// and chmod succeeds quietly instead of failing.
var mountData = map[string]string{"vfat": "umask=0077,quiet"}

// mountLabel mounts the partition labelled label on dir, trying each file
// system type in turn.
func mountLabel(sysBlock, label, dir string, fstypes []string, flags uintptr, wait time.Duration) (string, error) {
	dev, err := findByLabel(sysBlock, label, wait)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return dev, fmt.Errorf("mount %s: %w", dir, err)
	}
	var errs []error
	for _, fs := range fstypes {
		err := unix.Mount(dev, dir, fs, flags, mountData[fs])
		if err == nil {
			return dev, nil
		}
		errs = append(errs, fmt.Errorf("as %s: %w", fs, err))
	}
	return dev, fmt.Errorf("mount %s (%s) on %s: %w", dev, label, dir, errors.Join(errs...))
}

// cmdlineValue returns the value of key= on the kernel command line.
func cmdlineValue(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// bootCountVar is the EFI variable systemd-boot sets when it boots an entry
// with a boot counter, i.e. a slot on trial that has not been blessed.
const bootCountVar = "LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// onTrial reports whether this boot is a try of an unblessed entry.
func onTrial(efivars string) bool {
	_, err := os.Stat(filepath.Join(efivars, bootCountVar))
	return err == nil
}

// isMissing reports whether err says a file does not exist.
func isMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// nrOpen is where the kernel says how many descriptors a process may have
// at most (fs.nr_open).
const nrOpen = "/proc/sys/fs/nr_open"

// errNrOpen is what raiseFileLimit says of an nr_open that is no count.
var errNrOpen = errors.New("not a positive descriptor count")

// raiseFileLimit lifts init's RLIMIT_NOFILE, which edged inherits, from
// the kernel's 1024/4096 for PID 1 to the kernel's ceiling (the file at
// nrOpenPath): edged holds two descriptors per anchored media stream per
// leg (RTP and RTCP, idle pairs kept bound besides) and one per SIP
// connection, so a box at its default max_calls of 2,000 needs ~8,000 for
// media alone. The table grows only as descriptors are opened. It returns
// the limit set.
func raiseFileLimit(nrOpenPath string) (uint64, error) {
	b, err := os.ReadFile(nrOpenPath)
	if err != nil {
		return 0, fmt.Errorf("raise the file limit: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("raise the file limit: %s says %q: %w", nrOpenPath, strings.TrimSpace(string(b)), errNrOpen)
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err == nil && cur.Cur >= n && cur.Max >= n {
		return cur.Cur, nil // already there (a test's namespace, a kernel that starts higher)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		return 0, fmt.Errorf("raise the file limit to %d: %w", n, err)
	}
	return n, nil
}
