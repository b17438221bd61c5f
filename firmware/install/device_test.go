package install

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/umedge/umedge/firmware/keys"
)

// TestDevice reads a device from a fake root: command line, compatible
// string, trusted keys, and the root-b partition found through sysfs.
func TestDevice(t *testing.T) {
	root := t.TempDir()
	pub, _, _ := keys.Generate()
	files := map[string][]byte{
		"proc/cmdline":                      []byte("console=ttyS0 root=PARTLABEL=root-a appliance.slot=a quiet\n"),
		"etc/umedge/firmware/compatible":    []byte("umedge-amd64-v1\n"),
		"etc/umedge/firmware/trusted/k.pub": keys.MarshalPublic(pub, "test"),
		"sys/class/block/vda2/uevent":       []byte("MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root-a\n"),
		"sys/class/block/vda3/uevent":       []byte("MAJOR=254\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=root-b\n"),
		"dev/vda3":                          make([]byte, 8192),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tgt, err := deviceAt(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Active != "a" || tgt.Compat != "umedge-amd64-v1" || len(tgt.Trusted) != 1 || !bytes.Equal(tgt.Trusted[0], pub) {
		t.Fatalf("target = %+v", tgt)
	}
	part, err := tgt.OpenSlot("b")
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	if part.Size() != 8192 {
		t.Fatalf("root-b size %d", part.Size())
	}
	if _, err := tgt.OpenSlot("c"); err == nil {
		t.Fatal("slot c opened")
	}

	os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte("console=ttyS0\n"), 0o644)
	if _, err := deviceAt(root, t.TempDir()); err == nil {
		t.Fatal("a command line without appliance.slot was accepted")
	}
}
