// Package bundle writes and reads signed firmware update bundles: a tar
// stream of manifest.json, its ed25519 signature manifest.sig, then one
// entry per payload in manifest order.
//
// The manifest names the hardware family (compatible), a monotonic version
// used for anti-rollback, and each payload's name, size and SHA-256. A
// reader checks the signature, the hardware and the version before it hands
// out a single payload byte, and checks each payload's size and hash as it
// is read.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Format is the manifest format this package writes and reads.
const Format = "umedge-bundle/1"

// Payload names.
const (
	PayloadKernel = "kernel" // the slot's kernel, copied to /x/vmlinuz on the ESP
	PayloadRoot   = "root"   // the slot's squashfs root, written to partition root-x
)

const (
	manifestName = "manifest.json"
	sigName      = "manifest.sig"
	maxManifest  = 64 << 10
	maxRelease   = 128
)

// Manifest is the signed description of a bundle.
type Manifest struct {
	Format     string    `json:"format"`
	Compatible string    `json:"compatible"` // hardware family, e.g. "umedge-amd64-v1"
	Version    uint64    `json:"version"`    // monotonic; a device takes only versions above its own
	Release    string    `json:"release"`    // human release name, e.g. "v1.4.0"
	Payloads   []Payload `json:"payloads"`
}

// Payload is one manifest line.
type Payload struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Payload returns the manifest line named name.
func (m *Manifest) Payload(name string) (Payload, bool) {
	for _, p := range m.Payloads {
		if p.Name == name {
			return p, true
		}
	}
	return Payload{}, false
}

var (
	hexSHA256    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	compatibleRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

func (m *Manifest) check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: manifest %s", ErrMalformed, fmt.Sprintf(format, args...)))
	}
	if m.Format != Format {
		bad("format %q, want %q", m.Format, Format)
	}
	if !compatibleRE.MatchString(m.Compatible) {
		bad("compatible %q", m.Compatible)
	}
	if m.Version == 0 {
		bad("version 0")
	}
	seen := map[string]bool{}
	for _, p := range m.Payloads {
		switch {
		case p.Name != PayloadKernel && p.Name != PayloadRoot:
			bad("payload %q unknown", p.Name)
		case seen[p.Name]:
			bad("payload %q twice", p.Name)
		case p.Size <= 0:
			bad("payload %q size %d", p.Name, p.Size)
		case !hexSHA256.MatchString(p.SHA256):
			bad("payload %q sha256 %q", p.Name, p.SHA256)
		}
		seen[p.Name] = true
	}
	// The release goes into the boot entry's title line and the upload's
	// answer: one line of printable text.
	if len(m.Release) > maxRelease || strings.IndexFunc(m.Release, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		bad("release %.80q: at most %d printable characters", m.Release, maxRelease)
	}
	if !seen[PayloadKernel] || !seen[PayloadRoot] {
		bad("needs payloads %q and %q", PayloadKernel, PayloadRoot)
	}
	return errors.Join(errs...)
}

// Source is a payload to put into a new bundle.
type Source struct {
	Name string
	Path string
}

// epoch is the mtime of every tar entry, so that the same inputs give the
// same bundle.
var epoch = time.Unix(0, 0)

// Create writes a bundle of sources to w, signed with key. m's Payloads
// are filled in from the sources.
func Create(w io.Writer, m Manifest, sources []Source, key ed25519.PrivateKey) error {
	m.Format = Format
	m.Payloads = nil
	for _, s := range sources {
		p, err := describe(s)
		if err != nil {
			return err
		}
		m.Payloads = append(m.Payloads, p)
	}
	if err := m.check(); err != nil {
		return err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	tw := tar.NewWriter(w)
	if err := addEntry(tw, manifestName, bytes.NewReader(mj), int64(len(mj))); err != nil {
		return err
	}
	sig := ed25519.Sign(key, mj)
	if err := addEntry(tw, sigName, bytes.NewReader(sig), int64(len(sig))); err != nil {
		return err
	}
	for i, s := range sources {
		f, err := os.Open(s.Path)
		if err != nil {
			return fmt.Errorf("payload %s: %w", s.Name, err)
		}
		err = addEntry(tw, s.Name, f, m.Payloads[i].Size)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func describe(s Source) (Payload, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return Payload{}, fmt.Errorf("payload %s: %w", s.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Payload{}, fmt.Errorf("payload %s: hash %s: %w", s.Name, s.Path, err)
	}
	return Payload{Name: s.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func addEntry(tw *tar.Writer, name string, r io.Reader, size int64) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if n, err := io.Copy(tw, r); err != nil || n != size {
		return fmt.Errorf("write %s: %d of %d bytes: %w", name, n, size, err)
	}
	return nil
}

// Policy is what a device accepts.
type Policy struct {
	Trusted    []ed25519.PublicKey // any one of them must have signed the manifest
	Compatible string              // must equal the manifest's
	Installed  uint64              // the manifest's version must be above it
}

// Reader reads a bundle whose manifest has passed the Policy.
type Reader struct {
	Manifest Manifest
	tr       *tar.Reader
	next     int
}

// Open reads the manifest and its signature from r and checks them
// against pol. Nothing of the payloads has been read when it returns.
func Open(r io.Reader, pol Policy) (*Reader, error) {
	tr := tar.NewReader(r)
	mj, err := readSmall(tr, manifestName, maxManifest)
	if err != nil {
		return nil, err
	}
	sig, err := readSmall(tr, sigName, ed25519.SignatureSize)
	if err != nil {
		return nil, err
	}
	if len(sig) != ed25519.SignatureSize || !signedByAny(pol.Trusted, mj, sig) {
		return nil, ErrSignature
	}
	m, err := decodeManifest(mj)
	if err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.Compatible != pol.Compatible {
		return nil, fmt.Errorf("%w: bundle is for %q, this device is %q", ErrIncompatible, m.Compatible, pol.Compatible)
	}
	if m.Version <= pol.Installed {
		return nil, fmt.Errorf("%w: bundle version %d, installed %d", ErrDowngrade, m.Version, pol.Installed)
	}
	return &Reader{Manifest: m, tr: tr}, nil
}

// decodeManifest decodes the signed manifest strictly: no unknown field,
// no key twice in an object and nothing after the object. encoding/json
// would take the last of two "version" keys and ignore a second value,
// while a person or another tool reading the signed text may take the
// first: what is signed must read one way only.
func decodeManifest(mj []byte) (Manifest, error) {
	if err := uniqueKeys(json.NewDecoder(bytes.NewReader(mj))); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Manifest{}, fmt.Errorf("%w: manifest: data after the manifest object at byte %d", ErrMalformed, dec.InputOffset())
	}
	return m, nil
}

// uniqueKeys walks one JSON value and fails on an object that has a key
// twice.
func uniqueKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			if seen[key] {
				return fmt.Errorf("key %q twice in an object", key)
			}
			seen[key] = true
			if err := uniqueKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := uniqueKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

func signedByAny(keys []ed25519.PublicKey, msg, sig []byte) bool {
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig) {
			return true
		}
	}
	return false
}

func readSmall(tr *tar.Reader, name string, limit int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, tarError(name, err)
	}
	if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: entry %q where %q belongs", ErrMalformed, hdr.Name, name)
	}
	if hdr.Size > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, at most %d", ErrMalformed, name, hdr.Size, limit)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, tarError(name, err)
	}
	return b, nil
}

func tarError(name string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: ends before %s", ErrTruncated, name)
	}
	return fmt.Errorf("%w: reading %s: %w", ErrMalformed, name, err)
}

// Next returns the next payload in manifest order and a reader of its
// bytes. The reader fails with ErrPayload instead of ending when the bytes
// do not match the manifest, and with ErrTruncated when the bundle ends
// early. After the last payload Next returns io.EOF.
func (r *Reader) Next() (Payload, io.Reader, error) {
	if r.next >= len(r.Manifest.Payloads) {
		// The tar stream must end here: an entry after the last
		// payload is nothing the manifest describes.
		switch hdr, err := r.tr.Next(); {
		case errors.Is(err, io.EOF):
			return Payload{}, nil, io.EOF
		case err != nil:
			return Payload{}, nil, tarError("the end of the bundle", err)
		default:
			return Payload{}, nil, fmt.Errorf("%w: entry %q after the last payload", ErrMalformed, hdr.Name)
		}
	}
	p := r.Manifest.Payloads[r.next]
	r.next++
	hdr, err := r.tr.Next()
	if err != nil {
		return Payload{}, nil, tarError(p.Name, err)
	}
	if hdr.Name != p.Name || hdr.Typeflag != tar.TypeReg {
		return Payload{}, nil, fmt.Errorf("%w: entry %q where payload %q belongs", ErrMalformed, hdr.Name, p.Name)
	}
	if hdr.Size != p.Size {
		return Payload{}, nil, fmt.Errorf("%w: %s is %d bytes, manifest says %d", ErrPayload, p.Name, hdr.Size, p.Size)
	}
	return p, &checkedReader{r: r.tr, p: p, h: sha256.New()}, nil
}

// checkedReader hashes what it reads and checks size and hash at the end.
type checkedReader struct {
	r io.Reader
	p Payload
	h hash.Hash
	n int64
}

func (c *checkedReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, fmt.Errorf("%w: payload %s after %d of %d bytes", ErrTruncated, c.p.Name, c.n, c.p.Size)
	}
	if err == io.EOF {
		if c.n != c.p.Size {
			return n, fmt.Errorf("%w: payload %s after %d of %d bytes", ErrTruncated, c.p.Name, c.n, c.p.Size)
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.p.SHA256 {
			return n, fmt.Errorf("%w: payload %s has sha256 %s, manifest says %s", ErrPayload, c.p.Name, got, c.p.SHA256)
		}
	}
	return n, err
}

// Verify reads the whole bundle at path and checks everything: manifest
// against pol, then every payload's size and hash. It writes nothing.
func Verify(path string, pol Policy) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	return verify(f, pol)
}

func verify(in io.Reader, pol Policy) (Manifest, error) {
	r, err := Open(in, pol)
	if err != nil {
		return Manifest{}, err
	}
	for {
		_, pr, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Manifest, nil
		}
		if err != nil {
			return Manifest{}, err
		}
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return Manifest{}, err
		}
	}
}

// Inspect reads the manifest at the start of the bundle at path without
// checking the signature (for humans: umedge-fw inspect).
func Inspect(path string) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	mj, err := readSmall(tar.NewReader(f), manifestName, maxManifest)
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(mj, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	return m, nil
}
