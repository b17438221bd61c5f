// Package keys reads and writes the ed25519 keys that sign firmware
// bundles, and loads a device's list of trusted public keys.
//
// A public key file holds one line "ed25519-public <base64>", a private key
// file one line "ed25519-private <base64 of the 64-byte key>"; lines
// starting with # are comments. Only public keys belong in the repository
// (release/), except the development pair in dev/, which the tests and
// `make bundle` use and which no production trust list contains.
package keys

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	publicTag  = "ed25519-public"
	privateTag = "ed25519-private"
)

// ErrNoKey means a key file holds no key of the expected kind.
var ErrNoKey = errors.New("keys: no key in file")

// Generate makes a new key pair.
func Generate() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// MarshalPublic renders a public key file.
func MarshalPublic(pub ed25519.PublicKey, comment string) []byte {
	return marshal(publicTag, pub, comment)
}

// MarshalPrivate renders a private key file.
func MarshalPrivate(priv ed25519.PrivateKey, comment string) []byte {
	return marshal(privateTag, priv, comment)
}

func marshal(tag string, key []byte, comment string) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(comment), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "# %s\n", line)
		}
	}
	fmt.Fprintf(&b, "%s %s\n", tag, base64.StdEncoding.EncodeToString(key))
	return b.Bytes()
}

// ParsePublic reads a public key file's content.
func ParsePublic(data []byte) (ed25519.PublicKey, error) {
	b, err := parse(data, publicTag, ed25519.PublicKeySize)
	return ed25519.PublicKey(b), err
}

// ParsePrivate reads a private key file's content.
func ParsePrivate(data []byte) (ed25519.PrivateKey, error) {
	b, err := parse(data, privateTag, ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	priv := ed25519.PrivateKey(b)
	// The second half of an ed25519 private key is its public key; a file
	// whose halves disagree was edited or damaged.
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return nil, fmt.Errorf("%w: private key halves do not match", ErrNoKey)
	}
	return priv, nil
}

func parse(data []byte, tag string, size int) ([]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, v, _ := strings.Cut(line, " ")
		if t != tag {
			return nil, fmt.Errorf("%w: want %q, line starts with %q", ErrNoKey, tag, t)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoKey, tag, err)
		}
		if len(b) != size {
			return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrNoKey, tag, len(b), size)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: want %q", ErrNoKey, tag)
}

// ReadPrivate reads a private key file.
func ReadPrivate(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublic reads a public key file.
func ReadPublic(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadTrusted reads every *.pub file in dir, in name order. A directory
// without keys is not an error: such a device refuses every bundle.
func LoadTrusted(dir string) ([]ed25519.PublicKey, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []ed25519.PublicKey
	for _, f := range files {
		k, err := ReadPublic(f)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}
