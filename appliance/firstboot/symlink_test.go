package firstboot

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// emptyDir fails the test when dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("written outside the data partition, in %s: %v", dir, names)
	}
}

// TestSymlinksOutsideTheDataPartition: the data partition is the one
// file system an operator (or anyone with the SSD in hand) writes; a
// symlink there that leads out of it, to the ESP or a tmpfs, must not
// make first boot write the device key or the config elsewhere. Each
// step fails with the path instead.
func TestSymlinksOutsideTheDataPartition(t *testing.T) {
	def := filepath.Join(t.TempDir(), "umedge.toml")
	if err := os.WriteFile(def, []byte("# shipped\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("tls directory", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(data, TLSDir)); err != nil {
			t.Fatal(err)
		}
		_, _ = Layout(data, def)
		if _, err := DeviceCert(data, "edge.example.net", time.Now()); err == nil {
			t.Error("DeviceCert through a tls symlink that leaves the partition succeeded")
		}
		emptyDir(t, outside)
	})
	t.Run("key file", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Mkdir(filepath.Join(data, TLSDir), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "stolen-key.pem"), filepath.Join(data, KeyFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := DeviceCert(data, "edge.example.net", time.Now()); err != nil {
			t.Fatalf("DeviceCert with a dangling key symlink: %v (it replaces the link)", err)
		}
		emptyDir(t, outside)
		if fi, err := os.Lstat(filepath.Join(data, KeyFile)); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("the key is not a file of the partition: %v %v", fi, err)
		}
	})
	t.Run("dangling config", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(filepath.Join(outside, "umedge.toml"), filepath.Join(data, ConfigFile)); err != nil {
			t.Fatal(err)
		}
		_, _ = Layout(data, def)
		emptyDir(t, outside)
	})
	t.Run("log directory", func(t *testing.T) {
		data, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(data, LogDir)); err != nil {
			t.Fatal(err)
		}
		_, _ = Layout(data, def)
		emptyDir(t, outside)
	})
}
