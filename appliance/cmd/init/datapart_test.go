package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/appliance/firstboot"
)

// TestDataPartition formats a FAT and an ext4 file system, as the image
// builder may make the data partition, finds each by its label, mounts it
// as the init does, and lays it out for a first boot there: FAT has no
// file modes, so the device key must still be written (private by the
// mount's umask) and a second boot must keep everything.
func TestDataPartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system needs root")
	}
	for _, fs := range []struct{ name, mkfs string }{{"vfat", "mkfs.vfat"}, {"ext4", "mkfs.ext4"}} {
		t.Run(fs.name, func(t *testing.T) {
			if !kernelHas(t, fs.name) {
				t.Skipf("this host's kernel has no %s file system (not in /proc/filesystems)", fs.name)
			}
			mkfs, err := exec.LookPath(fs.mkfs)
			if err != nil {
				t.Fatalf("%s not found (Debian dosfstools / e2fsprogs, in TEST_DEBS)", fs.mkfs)
			}
			dir := t.TempDir()
			img := filepath.Join(dir, "data.img")
			if err := os.WriteFile(img, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, 64<<20); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(mkfs, img).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", fs.mkfs, err, out)
			}
			out, err := exec.Command("losetup", "--find", "--show", img).Output()
			if err != nil {
				t.Skipf("no loop device on this host: %v", err)
			}
			loop := strings.TrimSpace(string(out))
			t.Cleanup(func() { _ = exec.Command("losetup", "--detach", loop).Run() })

			sys := fakeBlock(t, map[string]string{filepath.Base(loop): "data", "vda1": "ESP"})
			mnt := filepath.Join(dir, "data")
			dev, err := mountLabel(sys, "data", mnt, []string{"ext4", "vfat"}, unix.MS_NOSUID|unix.MS_NODEV, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
			if dev != loop {
				t.Errorf("mounted %s, want %s", dev, loop)
			}

			def := filepath.Join(dir, "shipped.toml")
			if err := os.WriteFile(def, []byte("# shipped\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for boot := 1; boot <= 2; boot++ {
				created, err := firstboot.Layout(mnt, def)
				if err != nil {
					t.Fatalf("boot %d: layout: %v", boot, err)
				}
				made, err := firstboot.DeviceCert(mnt, "umedge.local", time.Now())
				if err != nil {
					t.Fatalf("boot %d: device certificate: %v", boot, err)
				}
				if first := boot == 1; first != made || first != (len(created) == 3) {
					t.Errorf("boot %d: created %v, made a certificate %v", boot, created, made)
				}
			}
			fi, err := os.Stat(filepath.Join(mnt, firstboot.KeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("device key mode %v: readable by others", fi.Mode().Perm())
			}
		})
	}
}

// kernelHas reports whether the running kernel knows file system fs.
func kernelHas(t *testing.T, fs string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

// TestCorruptDataPartition: a data partition whose file system is
// damaged does not mount, and the error names the device and says what
// each file system type answered; the init then runs on a RAM disk
// (TestInitFallsBack).
func TestCorruptDataPartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system needs root")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "data.img")
	if out, err := exec.Command("mkfs.ext4", "-q", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	// Overwrite the superblock (at 1 KiB) with garbage.
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 256)), 1024); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device on this host: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "--detach", loop).Run() })
	sys := fakeBlock(t, map[string]string{filepath.Base(loop): "data"})
	mnt := filepath.Join(dir, "data")
	_, err = mountLabel(sys, "data", mnt, []string{"ext4", "vfat"}, unix.MS_NOSUID|unix.MS_NODEV, time.Second)
	if err == nil {
		_ = unix.Unmount(mnt, 0)
		t.Fatal("a damaged file system mounted")
	}
	for _, want := range []string{loop, "(data)", "as ext4:", "as vfat:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
