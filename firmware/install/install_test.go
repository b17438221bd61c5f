package install

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
)

const (
	compat   = "umedge-amd64-v1"
	slotSize = 1 << 20
	cmdline  = "console=ttyS0 quiet ro rootfstype=squashfs rootwait init=/init panic=5 root=PARTLABEL=root-a appliance.slot=a"
)

// power is a budget of write units shared by every write of one install;
// when it runs out the write in progress is cut short and everything after
// fails: a power cut.
type power struct {
	mu   sync.Mutex
	left int64 // < 0: unlimited
	used int64
}

var errPowerCut = errors.New("power cut")

// spend returns how many of n units may be done now.
func (p *power) spend(n int64) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left < 0 {
		p.used += n
		return n, nil
	}
	if p.left < n {
		done := p.left
		p.left, p.used = 0, p.used+done
		return done, errPowerCut
	}
	p.left -= n
	p.used += n
	return n, nil
}

// memPartition is a slot partition in memory.
type memPartition struct {
	mu  sync.Mutex
	b   []byte
	pw  *power
	bad bool // flips a bit of every write (bad flash)
}

func (m *memPartition) Size() int64 { return int64(len(m.b)) }
func (m *memPartition) Sync() error { _, err := m.pw.spend(1); return err }
func (m *memPartition) Close() error {
	return nil
}

func (m *memPartition) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memPartition) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write past partition end")
	}
	n, err := m.pw.spend(int64(len(p)))
	copy(m.b[off:], p[:n])
	if m.bad && n > 0 {
		m.b[off] ^= 1
	}
	return int(n), err
}

// powerESP is a directory ESP whose writes, renames and removals spend
// the power budget; a rename or removal is all or nothing, as on FAT.
type powerESP struct {
	bootslot.ESP
	pw *power
}

func (e powerESP) Create(name string) (io.WriteCloser, error) {
	if _, err := e.pw.spend(1); err != nil {
		return nil, err
	}
	w, err := e.ESP.Create(name)
	if err != nil {
		return nil, err
	}
	return &powerWriter{w: w, pw: e.pw}, nil
}

func (e powerESP) Rename(o, n string) error {
	if _, err := e.pw.spend(1); err != nil {
		return err
	}
	return e.ESP.Rename(o, n)
}

func (e powerESP) Remove(name string) error {
	if _, err := e.pw.spend(1); err != nil {
		return err
	}
	return e.ESP.Remove(name)
}

type powerWriter struct {
	w  io.WriteCloser
	pw *power
}

func (w *powerWriter) Write(p []byte) (int, error) {
	n, err := w.pw.spend(int64(len(p)))
	m, werr := w.w.Write(p[:n])
	if werr != nil {
		return m, werr
	}
	return m, err
}

func (w *powerWriter) Close() error { return w.w.Close() }

// device is a test device: slot A installed (version 1), slot B empty.
type device struct {
	espDir    string
	pw        *power
	slots     map[string]*memPartition
	kernelA   []byte
	rootA     []byte
	pub       ed25519.PublicKey
	priv      ed25519.PrivateKey
	newKernel []byte
	newRoot   []byte
	bundleDir string
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newDevice(t *testing.T) *device {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d := &device{
		espDir: t.TempDir(), pw: &power{left: -1},
		kernelA: random(40_000), rootA: random(200_000),
		newKernel: random(50_000), newRoot: random(300_000),
		pub: pub, priv: priv, bundleDir: t.TempDir(),
	}
	d.slots = map[string]*memPartition{
		"a": {b: make([]byte, slotSize), pw: d.pw},
		"b": {b: make([]byte, slotSize), pw: d.pw},
	}
	copy(d.slots["a"].b, d.rootA)
	esp := bootslot.DirESP(d.espDir)
	for _, dir := range []string{"a", "b", bootslot.EntriesDir} {
		if err := esp.MkdirAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	entry := bootslot.Entry{Title: "umedge v1 (slot a)", Version: 1, Linux: "/a/vmlinuz", Options: cmdline}
	must(t, bootslot.WriteFile(esp, "a/vmlinuz", d.kernelA))
	must(t, bootslot.WriteFile(esp, path.Join(bootslot.EntriesDir, "slot-a.conf"), entry.Marshal()))
	must(t, bootslot.WriteFile(esp, "loader/loader.conf", []byte(bootslot.LoaderConf)))
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (d *device) target() Target {
	return Target{
		ESP:      powerESP{ESP: bootslot.DirESP(d.espDir), pw: d.pw},
		OpenSlot: func(s string) (Partition, error) { return d.slots[s], nil },
		Active:   "a",
		Trusted:  []ed25519.PublicKey{d.pub},
		Compat:   compat,
	}
}

func (d *device) bundle(t *testing.T, compatible string, version uint64, key ed25519.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	k, r := filepath.Join(dir, "kernel"), filepath.Join(dir, "root")
	must(t, os.WriteFile(k, d.newKernel, 0o644))
	must(t, os.WriteFile(r, d.newRoot, 0o644))
	var buf bytes.Buffer
	m := bundle.Manifest{Compatible: compatible, Version: version, Release: fmt.Sprintf("v%d", version)}
	must(t, bundle.Create(&buf, m, []bundle.Source{{Name: bundle.PayloadKernel, Path: k}, {Name: bundle.PayloadRoot, Path: r}}, key))
	p := filepath.Join(dir, "u.bundle")
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

// snapshot is everything of the device an install could change.
func (d *device) snapshot(t *testing.T) [32]byte {
	t.Helper()
	h := sha256.New()
	filepath.Walk(d.espDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", p, info.IsDir())
		if !info.IsDir() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	h.Write(d.slots["a"].b)
	h.Write(d.slots["b"].b)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// bootable plays systemd-boot: the default entry must exist, and its
// kernel and root must be exactly what that entry's version installed.
func (d *device) bootable(t *testing.T) bootslot.BootEntry {
	t.Helper()
	esp := bootslot.DirESP(d.espDir)
	e, err := bootslot.Default(esp)
	if err != nil {
		t.Fatalf("no bootable entry: %v", err)
	}
	kernel, root := d.kernelA, d.rootA
	if e.Entry.Version != 1 {
		kernel, root = d.newKernel, d.newRoot
	}
	got, err := bootslot.ReadFile(esp, bootslot.KernelPath(e.Name.Slot))
	if err != nil || !bytes.Equal(got, kernel) {
		t.Fatalf("default entry %s: kernel does not match version %d (%v)", e.File, e.Entry.Version, err)
	}
	if !bytes.Equal(d.slots[e.Name.Slot].b[:len(root)], root) {
		t.Fatalf("default entry %s: root does not match version %d", e.File, e.Entry.Version)
	}
	return e
}

func TestInstallGood(t *testing.T) {
	d := newDevice(t)
	res, err := Install(d.bundle(t, compat, 2, d.priv), d.target())
	if err != nil {
		t.Fatalf("Install() = %v", err)
	}
	if res.Slot != "b" || res.Entry != "slot-b+1-0.conf" {
		t.Fatalf("Install() = %+v", res)
	}
	e := d.bootable(t)
	if e.File != "slot-b+1-0.conf" {
		t.Fatalf("default entry %s, want the new trial entry", e.File)
	}
	want := "console=ttyS0 quiet ro rootfstype=squashfs rootwait init=/init panic=5 root=PARTLABEL=root-b appliance.slot=b"
	if e.Entry.Options != want || e.Entry.Linux != "/b/vmlinuz" || e.Entry.Version != 2 {
		t.Errorf("entry = %+v", e.Entry)
	}
	// The next bundle must be newer than 2, the highest version on the ESP.
	if _, err := Install(d.bundle(t, compat, 2, d.priv), d.target()); !errors.Is(err, bundle.ErrDowngrade) {
		t.Errorf("reinstall of version 2 = %v, want ErrDowngrade", err)
	}
}

// TestInstallRefusals: every bad bundle is refused and the device is
// byte for byte what it was.
func TestInstallRefusals(t *testing.T) {
	d := newDevice(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	good := d.bundle(t, compat, 2, d.priv)
	goodBytes, _ := os.ReadFile(good)
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "bad.bundle")
		must(t, os.WriteFile(p, b, 0o644))
		return p
	}
	// The root's last data byte sits before the tar trailer (1024 bytes)
	// and the padding of the root entry to 512 bytes.
	tampered := bytes.Clone(goodBytes)
	pad := (512 - len(d.newRoot)%512) % 512
	tampered[len(tampered)-1024-pad-100] ^= 0x80
	tests := []struct {
		name    string
		give    string
		wantErr error
	}{
		{"tampered", write(tampered), bundle.ErrPayload},
		{"truncated", write(goodBytes[:len(goodBytes)/2]), bundle.ErrTruncated},
		{"wrong key", d.bundle(t, compat, 2, otherKey), bundle.ErrSignature},
		{"wrong hardware", d.bundle(t, "umedge-arm64-v1", 2, d.priv), bundle.ErrIncompatible},
		{"older", d.bundle(t, compat, 1, d.priv), bundle.ErrDowngrade},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.snapshot(t)
			_, err := Install(tt.give, d.target())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Install() = %v, want %v", err, tt.wantErr)
			}
			if d.snapshot(t) != before {
				t.Fatal("a refused bundle changed the device")
			}
			if e := d.bootable(t); e.File != "slot-a.conf" {
				t.Fatalf("default entry %s after a refusal", e.File)
			}
		})
	}
}

func TestInstallReadBackFails(t *testing.T) {
	d := newDevice(t)
	d.slots["b"].bad = true
	_, err := Install(d.bundle(t, compat, 2, d.priv), d.target())
	if !errors.Is(err, ErrReadBack) {
		t.Fatalf("Install() on bad flash = %v, want ErrReadBack", err)
	}
	if e := d.bootable(t); e.File != "slot-a.conf" {
		t.Fatalf("default entry %s after a failed read-back", e.File)
	}
}

// TestPowerCut is the power-cut matrix: the install is cut after every
// few kilobytes written and at every metadata step; after each cut the
// device boots either the old slot A or, if the cut came after the arming
// rename, the complete new slot B.
func TestPowerCut(t *testing.T) {
	d := newDevice(t)
	b := d.bundle(t, compat, 2, d.priv)
	if _, err := Install(b, d.target()); err != nil {
		t.Fatal(err)
	}
	total := d.pw.used
	cuts := []int64{0, 1, 2, 3}
	for c := int64(4); c < total; c += 4093 {
		cuts = append(cuts, c)
	}
	for c := total - 8; c <= total; c++ {
		cuts = append(cuts, c)
	}
	var sawOld, sawNew int
	for _, cut := range cuts {
		d := newDevice(t)
		b := d.bundle(t, compat, 2, d.priv)
		d.pw.left = cut
		_, err := Install(b, d.target())
		if err != nil && !errors.Is(err, errPowerCut) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		e := d.bootable(t)
		switch e.Entry.Version {
		case 1:
			sawOld++
		default:
			sawNew++
		}
	}
	t.Logf("%d cuts over %d write units: %d boot the old slot, %d the new", len(cuts), total, sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Fatalf("the matrix did not reach both outcomes (old %d, new %d)", sawOld, sawNew)
	}
}

// TestSecondUpdateGoesToA: after B is blessed and running, the next
// update replaces A and leaves B alone.
func TestSecondUpdateGoesToA(t *testing.T) {
	d := newDevice(t)
	if _, err := Install(d.bundle(t, compat, 2, d.priv), d.target()); err != nil {
		t.Fatal(err)
	}
	esp := bootslot.DirESP(d.espDir)
	if _, err := bootslot.TryBoot(esp); err != nil {
		t.Fatal(err)
	}
	must(t, bootslot.BlessBooted(esp, "", "b"))
	tgt := d.target()
	tgt.Active = "b"
	res, err := Install(d.bundle(t, compat, 3, d.priv), tgt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "a" {
		t.Fatalf("second update went to slot %s", res.Slot)
	}
	names, _ := esp.ReadDir(bootslot.EntriesDir)
	if got := fmt.Sprint(names); got != "[slot-a+1-0.conf slot-b.conf]" {
		t.Fatalf("entries %s", got)
	}
}

// TestInstallRefusedWhileOnTrial: while the running slot is still on trial
// the other slot is its only fallback and must not be replaced.
func TestInstallRefusedWhileOnTrial(t *testing.T) {
	d := newDevice(t)
	if _, err := Install(d.bundle(t, compat, 2, d.priv), d.target()); err != nil {
		t.Fatal(err)
	}
	esp := bootslot.DirESP(d.espDir)
	if _, err := bootslot.TryBoot(esp); err != nil {
		t.Fatal(err)
	}
	tgt := d.target()
	tgt.Active = "b"
	before := d.snapshot(t)
	if _, err := Install(d.bundle(t, compat, 3, d.priv), tgt); !errors.Is(err, ErrActiveOnTrial) {
		t.Fatalf("Install() while on trial = %v, want ErrActiveOnTrial", err)
	}
	if d.snapshot(t) != before {
		t.Fatal("the refused install changed the device")
	}
}
