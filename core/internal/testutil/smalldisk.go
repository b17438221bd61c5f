package testutil

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// SmallDisk is a new directory with a tmpfs of kib KiB mounted on it, for
// a test of a full disk (the core's twin of appliance/internal/apptest's,
// which the core cannot import); it is unmounted when the test ends. It
// skips the test when not run as root or when the mount fails.
func SmallDisk(t testing.TB, kib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dk", kib)); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}
