package rootfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/pierrec/lz4/v4"
)

func testTree(t *testing.T) *Tree {
	t.Helper()
	src := filepath.Join(t.TempDir(), "edged")
	if err := os.WriteFile(src, bytes.Repeat([]byte("edged binary "), 50_000), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &Tree{Dirs: []string{"/proc", "/dev"}}
	tr.Add("/usr/bin/edged", 0o755, src)
	tr.AddData("/etc/umedge/umedge.toml", 0o644, []byte("[log]\nlevel = \"info\"\n"))
	tr.AddData("/init", 0o755, []byte("#!init"))
	return tr
}

func TestSquashfsReproducibleAndReadable(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sqfs"), filepath.Join(dir, "b.sqfs")
	for _, p := range []string{a, b} {
		if _, err := WriteSquashfs(testTree(t), p); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two squashfs images of the same tree differ")
	}
	if len(da)%4096 != 0 || len(da) > 200_000 {
		t.Errorf("squashfs is %d bytes: not padded to 4 KiB or not compressed", len(da))
	}

	f, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := squashfs.Read(file.New(f, true), st.Size(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.ReadFile("etc/umedge/umedge.toml")
	if err != nil || string(got) != "[log]\nlevel = \"info\"\n" {
		t.Fatalf("config read back %q, %v", got, err)
	}
	fi, err := fsys.Stat("init")
	if err != nil || fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(Epoch) {
		t.Fatalf("init: %v %v", fi, err)
	}
	if _, err := fsys.Stat("proc"); err != nil {
		t.Errorf("empty directory /proc missing: %v", err)
	}
}

func TestTreeRefusesBadPaths(t *testing.T) {
	tr := &Tree{}
	tr.AddData("relative", 0o644, nil)
	tr.AddData("/a/../b", 0o644, nil)
	tr.AddData("/twice", 0o644, nil)
	tr.AddData("/twice", 0o644, nil)
	_, err := WriteSquashfs(tr, filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(err.Error(), "relative") || !strings.Contains(err.Error(), "/twice") {
		t.Fatalf("WriteSquashfs() = %v, want every bad path named", err)
	}
}

// TestInitramfs reads the newc archive back: LZ4 in the legacy frame
// format (the kernel's unpacker reads no other LZ4 framing), and every
// entry's header fields as the unpacker reads them.
func TestInitramfs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "initramfs.cpio.lz4")
	if err := WriteInitramfs(testTree(t), p); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// lib/decompress_unlz4.c: ARCHIVE_MAGICNUMBER 0x184C2102, little endian.
	if len(raw) < 4 || !bytes.Equal(raw[:4], []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Fatalf("initramfs starts % x, want the LZ4 legacy magic 02 21 4c 18", raw[:min(4, len(raw))])
	}
	data, err := io.ReadAll(lz4.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		mode, rdevMajor, rdevMinor uint64
		data                       string
	}
	got := map[string]entry{}
	for off := 0; ; {
		h := string(data[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		size, namesize := int(field(6)), int(field(11))
		name := string(data[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		if name == "TRAILER!!!" {
			break
		}
		got[name] = entry{mode: field(1), rdevMajor: field(9), rdevMinor: field(10), data: string(data[off : off+size])}
		off = (off + size + 3) &^ 3
	}
	if c := got["dev/console"]; c.mode != 0o020600 || c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console = %+v, want char 5,1", c)
	}
	if i := got["init"]; i.mode != 0o100755 || i.data != "#!init" {
		t.Errorf("init = %+v", i)
	}
	for _, d := range []string{"usr", "usr/bin", "etc/umedge", "proc"} {
		if got[d].mode != 0o040755 {
			t.Errorf("directory %s = %+v", d, got[d])
		}
	}
}
