package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// craft is a bundle built by hand, entry by entry, so that a test can
// sign any manifest text and lay out any entries.
type craft struct {
	manifest []byte
	sig      []byte // nil = sign manifest with the fixture's key
	entries  []craftEntry
	trailing []byte // bytes after the tar stream
}

type craftEntry struct {
	name     string
	typeflag byte
	data     []byte
}

func (f *fixture) payloads(t *testing.T) (kernel, root []byte) {
	t.Helper()
	k, err := os.ReadFile(f.kernel)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.ReadFile(f.root)
	if err != nil {
		t.Fatal(err)
	}
	return k, r
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// manifestText is a manifest for the fixture's payloads with fields
// replaced: each of over is `"key": value` text put in place of the key's.
func (f *fixture) manifestText(t *testing.T, over map[string]string) []byte {
	t.Helper()
	k, r := f.payloads(t)
	fields := []struct{ k, v string }{
		{"format", `"umedge-bundle/1"`},
		{"compatible", `"umedge-amd64-v1"`},
		{"version", `5`},
		{"release", `"v5"`},
		{"payloads", fmt.Sprintf(`[{"name": "kernel", "size": %d, "sha256": %q}, {"name": "root", "size": %d, "sha256": %q}]`, len(k), sum(k), len(r), sum(r))},
	}
	var parts []string
	for _, fl := range fields {
		v := fl.v
		if o, ok := over[fl.k]; ok {
			v = o
		}
		if v != "-" {
			parts = append(parts, fmt.Sprintf("%q: %s", fl.k, v))
		}
	}
	return []byte("{" + strings.Join(parts, ", ") + "}")
}

func (f *fixture) write(t *testing.T, c craft) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, typeflag byte, data []byte) {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: typeflag, Format: tar.FormatPAX}
		if typeflag != tar.TypeReg {
			hdr.Size = 0
			hdr.Linkname = "/etc/shadow"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
	}
	sig := c.sig
	if sig == nil {
		sig = ed25519.Sign(f.priv, c.manifest)
	}
	add(manifestName, tar.TypeReg, c.manifest)
	add(sigName, tar.TypeReg, sig)
	entries := c.entries
	if entries == nil {
		k, r := f.payloads(t)
		entries = []craftEntry{{PayloadKernel, tar.TypeReg, k}, {PayloadRoot, tar.TypeReg, r}}
	}
	for _, e := range entries {
		tf := e.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		add(e.name, tf, e.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(c.trailing)
	p := filepath.Join(t.TempDir(), "crafted.bundle")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCraftedManifests signs manifests and lays out entries no honest
// Create makes. Each is refused with the error that names its fault,
// and never with a panic.
func TestCraftedManifests(t *testing.T) {
	f := newFixture(t)
	k, r := f.payloads(t)
	pl := func(entries ...string) string { return "[" + strings.Join(entries, ", ") + "]" }
	line := func(name string, size int64, sha string) string {
		return fmt.Sprintf(`{"name": %q, "size": %d, "sha256": %q}`, name, size, sha)
	}
	kLine, rLine := line("kernel", int64(len(k)), sum(k)), line("root", int64(len(r)), sum(r))
	m := func(over map[string]string) []byte { return f.manifestText(t, over) }
	good := m(nil)
	tests := []struct {
		name    string
		give    craft
		wantErr error
		want    string // in the error text
	}{
		{name: "control", give: craft{manifest: good}},
		{name: "duplicate kernel", give: craft{manifest: m(map[string]string{"payloads": pl(kLine, kLine, rLine)})}, wantErr: ErrMalformed, want: "twice"},
		{name: "payload name with slash", give: craft{manifest: m(map[string]string{"payloads": pl(kLine, rLine, line("../root", 1, sum(nil)))})}, wantErr: ErrMalformed, want: "unknown"},
		{name: "payload name with NUL", give: craft{manifest: m(map[string]string{"payloads": pl(`{"name": "kernel\u0000", "size": `+fmt.Sprint(len(k))+`, "sha256": "`+sum(k)+`"}`, rLine)})}, wantErr: ErrMalformed, want: "unknown"},
		{name: "very long payload name", give: craft{manifest: m(map[string]string{"payloads": pl(kLine, rLine, line(strings.Repeat("k", 60000), 1, sum(nil)))})}, wantErr: ErrMalformed, want: "unknown"},
		{name: "negative size", give: craft{manifest: m(map[string]string{"payloads": pl(line("kernel", -1, sum(k)), rLine)})}, wantErr: ErrMalformed, want: "size -1"},
		{name: "zero size", give: craft{manifest: m(map[string]string{"payloads": pl(line("kernel", 0, sum(nil)), rLine)})}, wantErr: ErrMalformed, want: "size 0"},
		{name: "size says more than the entry", give: craft{manifest: m(map[string]string{"payloads": pl(line("kernel", int64(len(k))+1, sum(k)), rLine)})}, wantErr: ErrPayload, want: "manifest says"},
		{name: "huge size", give: craft{manifest: m(map[string]string{"payloads": pl(line("kernel", 1<<62, sum(k)), rLine)})}, wantErr: ErrPayload, want: "manifest says"},
		{name: "size over int64", give: craft{manifest: m(map[string]string{"payloads": `[{"name": "kernel", "size": 9223372036854775808, "sha256": "` + sum(k) + `"}]`})}, wantErr: ErrMalformed},
		{name: "upper-case sha256", give: craft{manifest: m(map[string]string{"payloads": pl(line("kernel", int64(len(k)), strings.ToUpper(sum(k))), rLine)})}, wantErr: ErrMalformed, want: "sha256"},
		{name: "no payloads", give: craft{manifest: m(map[string]string{"payloads": `[]`})}, wantErr: ErrMalformed, want: "needs payloads"},
		{name: "version over uint64", give: craft{manifest: m(map[string]string{"version": "18446744073709551616"})}, wantErr: ErrMalformed},
		{name: "negative version", give: craft{manifest: m(map[string]string{"version": "-1"})}, wantErr: ErrMalformed},
		{name: "version as text", give: craft{manifest: m(map[string]string{"version": `"9"`})}, wantErr: ErrMalformed},
		{name: "version equal", give: craft{manifest: m(map[string]string{"version": "4"})}, wantErr: ErrDowngrade},
		{name: "version 0", give: craft{manifest: m(map[string]string{"version": "0"})}, wantErr: ErrMalformed, want: "version 0"},
		{name: "compatible in upper case", give: craft{manifest: m(map[string]string{"compatible": `"UMEDGE-amd64-v1"`})}, wantErr: ErrMalformed, want: "compatible"},
		{name: "compatible with a path", give: craft{manifest: m(map[string]string{"compatible": `"umedge-amd64-v1/../x"`})}, wantErr: ErrMalformed, want: "compatible"},
		{name: "compatible with a newline", give: craft{manifest: m(map[string]string{"compatible": `"umedge-amd64-v1\n"`})}, wantErr: ErrMalformed, want: "compatible"},
		{name: "compatible with a suffix", give: craft{manifest: m(map[string]string{"compatible": `"umedge-amd64-v1.1"`})}, wantErr: ErrIncompatible},
		{name: "release with a newline", give: craft{manifest: m(map[string]string{"release": `"v5\noptions init=/bin/sh"`})}, wantErr: ErrMalformed, want: "release"},
		{name: "very long release", give: craft{manifest: m(map[string]string{"release": `"` + strings.Repeat("v", 4096) + `"`})}, wantErr: ErrMalformed, want: "release"},
		{name: "unknown field", give: craft{manifest: m(map[string]string{"release": `"v5", "kernel_cmdline": "init=/bin/sh"`})}, wantErr: ErrMalformed, want: "unknown field"},
		{name: "duplicate key", give: craft{manifest: m(map[string]string{"release": `"v5", "version": 9`})}, wantErr: ErrMalformed, want: "twice"},
		{name: "second JSON value", give: craft{manifest: append(bytes.Clone(good), []byte(` {"version": 9}`)...)}, wantErr: ErrMalformed, want: "after"},
		{name: "manifest over 64 KiB", give: craft{manifest: m(map[string]string{"release": `"v5"` + strings.Repeat(" ", maxManifest)})}, wantErr: ErrMalformed, want: "at most"},
		{name: "signature over another manifest", give: craft{manifest: good, sig: ed25519.Sign(f.priv, m(map[string]string{"version": "9"}))}, wantErr: ErrSignature},
		{name: "signature with trailing bytes", give: craft{manifest: good, sig: append(ed25519.Sign(f.priv, good), 0)}, wantErr: ErrMalformed, want: "at most"},
		{name: "short signature", give: craft{manifest: good, sig: ed25519.Sign(f.priv, good)[:63]}, wantErr: ErrSignature},
		{name: "payloads out of order", give: craft{manifest: good, entries: []craftEntry{{name: PayloadRoot, data: r}, {name: PayloadKernel, data: k}}}, wantErr: ErrMalformed, want: "where payload"},
		{name: "payload as a symlink", give: craft{manifest: good, entries: []craftEntry{{name: PayloadKernel, typeflag: tar.TypeSymlink}, {name: PayloadRoot, data: r}}}, wantErr: ErrMalformed, want: "where payload"},
		{name: "payload entry shorter than manifest", give: craft{manifest: good, entries: []craftEntry{{name: PayloadKernel, data: k[:len(k)-1]}, {name: PayloadRoot, data: r}}}, wantErr: ErrPayload, want: "manifest says"},
		{name: "entry after the last payload", give: craft{manifest: good, entries: []craftEntry{{name: PayloadKernel, data: k}, {name: PayloadRoot, data: r}, {name: "extra", data: []byte("x")}}}, wantErr: ErrMalformed, want: "after the last payload"},
		{name: "garbage after the tar trailer", give: craft{manifest: good, trailing: []byte("trailing")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(f.write(t, tt.give), f.policy())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify() = %v, want it verified", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify() = %v, want %v with %q", err, tt.wantErr, tt.want)
			}
		})
	}
}

// TestTruncatedAtEveryOffset cuts a small bundle at every byte offset
// (TestTruncatedEverywhere steps 2003 bytes over a large one and misses
// the headers' and the signature's edges). Every cut before the end of
// the root payload's data is refused as truncated; a cut after it, in
// the padding or the tar trailer, loses nothing the manifest describes
// and is either refused as truncated or verifies.
func TestTruncatedAtEveryOffset(t *testing.T) {
	f := newFixture(t)
	writeRandom(t, f.kernel, 700)
	writeRandom(t, f.root, 1501)
	full, err := os.ReadFile(f.create(t, "umedge-amd64-v1", 5, f.priv))
	if err != nil {
		t.Fatal(err)
	}
	_, r := f.payloads(t)
	rootEnd := bytes.Index(full, r) + len(r)
	accepted := 0
	for n := 0; n < len(full); n++ {
		_, err := verify(bytes.NewReader(full[:n]), f.policy())
		switch {
		case err == nil && n >= rootEnd:
			accepted++
		case err == nil:
			t.Fatalf("a bundle cut at %d of %d bytes (root ends at %d) verified", n, len(full), rootEnd)
		case !errors.Is(err, ErrTruncated):
			t.Fatalf("a bundle cut at %d of %d bytes: %v, want ErrTruncated", n, len(full), err)
		}
	}
	t.Logf("%d cuts, %d after the root's data verified", len(full), accepted)
}
