package modules

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umedge/umedge/appliance/kmod"
)

// fakeKo writes a minimal ELF64 relocatable file whose only contents are a
// .modinfo section of the given key=value strings, as a kernel module has.
func fakeKo(t *testing.T, path string, modinfo ...string) {
	t.Helper()
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{uint16(1), uint16(62), uint32(1), uint64(0), uint64(0), shOff, uint32(0),
		uint16(ehsize), uint16(0), uint16(0), uint16(shentsize), uint16(3), uint16(2)} {
		_ = binary.Write(&b, le, v)
	}
	b.Write(info)
	b.Write(shstr)
	b.Write(make([]byte, int(shOff)-b.Len()))
	section := func(name, typ uint32, off, size uint64) {
		for _, v := range []any{name, typ, uint64(0), uint64(0), off, size, uint32(0), uint32(0), uint64(1), uint64(0)} {
			_ = binary.Write(&b, le, v)
		}
	}
	section(0, 0, 0, 0)                        // SHN_UNDEF
	section(1, 1, infoOff, uint64(len(info)))  // .modinfo, PROGBITS
	section(10, 3, strOff, uint64(len(shstr))) // .shstrtab, STRTAB
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSelectWritesWhatKmodReads: the named module and its dependencies,
// read from .modinfo, and nothing else; the modules.dep and
// modules.alias written for them load through appliance/kmod in
// dependency order, by name and by alias.
func TestSelectWritesWhatKmodReads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "6.1.0-57-cloud-amd64")
	fakeKo(t, dir+"/kernel/net/8021q/8021q.ko", "license=GPL", "alias=rtnl-link-vlan", "depends=mrp,garp", "name=8021q")
	fakeKo(t, dir+"/kernel/net/802/garp.ko", "depends=stp,llc", "name=garp")
	fakeKo(t, dir+"/kernel/net/802/stp.ko", "depends=llc", "name=stp")
	fakeKo(t, dir+"/kernel/net/802/mrp.ko", "depends=", "name=mrp")
	fakeKo(t, dir+"/kernel/net/llc/llc.ko", "depends=", "name=llc")
	fakeKo(t, dir+"/kernel/drivers/char/hw_random/virtio-rng.ko", "alias=virtio:d00000004v*", "depends=", "name=virtio_rng")
	sel, err := Select(dir, []string{"8021q"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.Softdep() == nil {
		t.Error("Softdep of a selection without soft dependencies is nil: the image would have no modules.softdep file")
	}
	if sel.Release != "6.1.0-57-cloud-amd64" || len(sel.Modules) != 5 {
		t.Fatalf("Select = %s with %+v, want the release and 8021q's 5 modules", sel.Release, sel.Modules)
	}
	for _, m := range sel.Modules {
		if m.Name == "virtio_rng" {
			t.Errorf("virtio_rng selected, nobody asked for it")
		}
	}
	out := t.TempDir()
	if err := os.WriteFile(out+"/modules.dep", sel.Dep(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+"/modules.alias", sel.Alias(), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := kmod.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s.Insert = func(f string) error { got = append(got, kmod.Name(f)); return nil }
	if err := s.Load("rtnl-link-vlan"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "mrp llc stp garp 8021q" {
		t.Errorf("loaded %v, want mrp llc stp garp 8021q", got)
	}

	fakeKo(t, dir+"/kernel/lib/libcrc32c.ko", "softdep=pre: crc32c", "depends=", "name=libcrc32c")
	fakeKo(t, dir+"/kernel/crypto/crc32c_generic.ko", "alias=crypto-crc32c", "alias=crc32c", "depends=", "name=crc32c_generic")
	soft, err := Select(dir, []string{"libcrc32c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(soft.Modules) != 2 || string(soft.Softdep()) != "softdep libcrc32c pre: crc32c\n" {
		t.Errorf("libcrc32c: %+v, softdep %q; want crc32c_generic along (by alias) and the softdep line", soft.Modules, soft.Softdep())
	}

	if _, err := Select(dir, []string{"8021q", "nf_tables"}); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "nf_tables") {
		t.Errorf("Select of a missing module = %v", err)
	}
	fakeKo(t, dir+"/kernel/net/x/needy.ko", "depends=gone", "name=needy")
	if _, err := Select(dir, []string{"needy"}); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "gone (needed by needy)") {
		t.Errorf("Select with a missing dependency = %v", err)
	}
	if err := os.WriteFile(dir+"/kernel/bad.ko", []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Select(dir, []string{"8021q"}); err == nil || !strings.Contains(err.Error(), "bad.ko") {
		t.Errorf("Select over a broken .ko = %v, want it named", err)
	}
}
