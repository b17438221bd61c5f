package keys

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	pub, priv, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ParsePublic(MarshalPublic(pub, "a\ncomment"))
	if err != nil || !bytes.Equal(gotPub, pub) {
		t.Fatalf("ParsePublic() = %x, %v", gotPub, err)
	}
	gotPriv, err := ParsePrivate(MarshalPrivate(priv, ""))
	if err != nil || !bytes.Equal(gotPriv, priv) {
		t.Fatalf("ParsePrivate() = %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	pub, priv, _ := Generate()
	damaged := bytes.Clone(priv)
	damaged[40] ^= 1 // the public half no longer matches the seed
	tests := []struct {
		name string
		give []byte
		priv bool
	}{
		{name: "empty", give: nil},
		{name: "private where public belongs", give: MarshalPrivate(priv, "")},
		{name: "public where private belongs", give: MarshalPublic(pub, ""), priv: true},
		{name: "bad base64", give: []byte("ed25519-public !!!\n")},
		{name: "short key", give: []byte("ed25519-public AAAA\n")},
		{name: "halves disagree", give: MarshalPrivate(damaged, ""), priv: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.priv {
				_, err = ParsePrivate(tt.give)
			} else {
				_, err = ParsePublic(tt.give)
			}
			if !errors.Is(err, ErrNoKey) {
				t.Fatalf("err = %v, want ErrNoKey", err)
			}
		})
	}
}

func TestLoadTrusted(t *testing.T) {
	dir := t.TempDir()
	p1, _, _ := Generate()
	p2, _, _ := Generate()
	os.WriteFile(filepath.Join(dir, "b.pub"), MarshalPublic(p2, ""), 0o644)
	os.WriteFile(filepath.Join(dir, "a.pub"), MarshalPublic(p1, ""), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key"), 0o644)
	got, err := LoadTrusted(dir)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], p1) || !bytes.Equal(got[1], p2) {
		t.Fatalf("LoadTrusted() = %d keys, %v", len(got), err)
	}
	os.WriteFile(filepath.Join(dir, "c.pub"), []byte("garbage"), 0o644)
	if _, err := LoadTrusted(dir); err == nil {
		t.Fatal("a broken key file was skipped silently")
	}
}

// TestDevKeyNotTrustedForRelease: the development pair (its private half is
// in the repository) is a valid pair and in no release trust list.
func TestDevKeyNotTrustedForRelease(t *testing.T) {
	devPub, err := ReadPublic("dev/dev-ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	devPriv, err := ReadPrivate("dev/dev-ed25519.key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(devPriv.Public().(ed25519.PublicKey), devPub) {
		t.Fatal("dev key files are not one pair")
	}
	release, err := LoadTrusted("release")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range release {
		if bytes.Equal(k, devPub) {
			t.Fatal("the development key is in the release trust list")
		}
	}
	if keys, _ := filepath.Glob("release/*.key"); len(keys) > 0 {
		t.Fatalf("private keys in the release trust list: %v", keys)
	}
}
