package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type fixture struct {
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	kernel string
	root   string
	dir    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &fixture{pub: pub, priv: priv, dir: dir, kernel: filepath.Join(dir, "vmlinuz"), root: filepath.Join(dir, "root.squashfs")}
	writeRandom(t, f.kernel, 70_000)
	writeRandom(t, f.root, 300_001)
	return f
}

func writeRandom(t *testing.T, p string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) create(t *testing.T, compat string, version uint64, key ed25519.PrivateKey) string {
	t.Helper()
	var buf bytes.Buffer
	m := Manifest{Compatible: compat, Version: version, Release: "test"}
	src := []Source{{Name: PayloadKernel, Path: f.kernel}, {Name: PayloadRoot, Path: f.root}}
	if err := Create(&buf, m, src, key); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "b.bundle")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) policy() Policy {
	return Policy{Trusted: []ed25519.PublicKey{f.pub}, Compatible: "umedge-amd64-v1", Installed: 4}
}

func TestVerifyGood(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "umedge-amd64-v1", 5, f.priv)
	m, err := Verify(p, f.policy())
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if m.Version != 5 || len(m.Payloads) != 2 || m.Payloads[1].Size != 300_001 {
		t.Errorf("manifest = %+v", m)
	}
	// The same inputs give the same bundle (tar times are fixed, ed25519
	// signatures deterministic).
	q := f.create(t, "umedge-amd64-v1", 5, f.priv)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(q)
	if !bytes.Equal(a, b) {
		t.Error("two bundles of the same inputs differ")
	}
}

// TestRefusals is the bundle refusal matrix: each bad bundle fails
// Verify with its own error.
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	good := f.create(t, "umedge-amd64-v1", 5, f.priv)
	goodBytes, _ := os.ReadFile(good)

	mutate := func(fn func(b []byte) []byte) string {
		b := fn(bytes.Clone(goodBytes))
		p := filepath.Join(t.TempDir(), "bad.bundle")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Offsets: the manifest's data starts after the first 512-byte tar
	// header (plus PAX records); the last payload ends 1024 bytes of tar
	// trailer before the end.
	manifestAt := bytes.Index(goodBytes, []byte(`"compatible"`))
	tests := []struct {
		name    string
		give    string
		pol     func(p *Policy)
		wantErr error
	}{
		{name: "wrong key", give: f.create(t, "umedge-amd64-v1", 5, otherKey), wantErr: ErrSignature},
		{name: "no trusted keys", give: good, pol: func(p *Policy) { p.Trusted = nil }, wantErr: ErrSignature},
		{name: "wrong hardware", give: f.create(t, "umedge-arm64-v1", 5, f.priv), wantErr: ErrIncompatible},
		{name: "older version", give: f.create(t, "umedge-amd64-v1", 3, f.priv), wantErr: ErrDowngrade},
		{name: "same version", give: f.create(t, "umedge-amd64-v1", 4, f.priv), wantErr: ErrDowngrade},
		{name: "tampered manifest", give: mutate(func(b []byte) []byte { b[manifestAt+2] ^= 1; return b }), wantErr: ErrSignature},
		{name: "tampered root payload", give: mutate(func(b []byte) []byte { b[len(b)-1024-100] ^= 0x40; return b }), wantErr: ErrPayload},
		{name: "tampered kernel payload", give: mutate(func(b []byte) []byte {
			i := bytes.Index(b, []byte("kernel\x00")) // the kernel's tar header
			b[i+512*3+10] ^= 1
			return b
		}), wantErr: ErrPayload},
		{name: "truncated in root", give: mutate(func(b []byte) []byte { return b[:len(b)-5000] }), wantErr: ErrTruncated},
		{name: "truncated in manifest", give: mutate(func(b []byte) []byte { return b[:manifestAt+10] }), wantErr: ErrTruncated},
		{name: "empty file", give: mutate(func([]byte) []byte { return nil }), wantErr: ErrTruncated},
		{name: "not a tar", give: mutate(func([]byte) []byte { return bytes.Repeat([]byte("x"), 4096) }), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := f.policy()
			if tt.pol != nil {
				tt.pol(&pol)
			}
			_, err := Verify(tt.give, pol)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestTruncatedEverywhere cuts the bundle at many lengths: every cut is
// refused.
func TestTruncatedEverywhere(t *testing.T) {
	f := newFixture(t)
	good, _ := os.ReadFile(f.create(t, "umedge-amd64-v1", 5, f.priv))
	p := filepath.Join(t.TempDir(), "cut.bundle")
	// Every length up to the end of the last payload; the tar trailer
	// (two zero blocks at the end) carries nothing.
	end := len(good) - 1024
	for n := 0; n < end; n += 2003 {
		if err := os.WriteFile(p, good[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(p, f.policy()); err == nil {
			t.Fatalf("a bundle cut at %d of %d bytes verified", n, len(good))
		}
	}
}

func TestCreateRefusesBadManifest(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	for _, m := range []Manifest{
		{Compatible: "Bad Name", Version: 1},
		{Compatible: "umedge-amd64-v1", Version: 0},
	} {
		err := Create(&buf, m, []Source{{Name: PayloadKernel, Path: f.kernel}, {Name: PayloadRoot, Path: f.root}}, f.priv)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Create(%+v) = %v, want ErrMalformed", m, err)
		}
	}
	err := Create(&buf, Manifest{Compatible: "umedge-amd64-v1", Version: 1}, []Source{{Name: PayloadKernel, Path: f.kernel}}, f.priv)
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("Create without root = %v, want ErrMalformed", err)
	}
}
