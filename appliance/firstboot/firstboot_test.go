package firstboot

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLayout(t *testing.T) {
	data := t.TempDir()
	def := filepath.Join(t.TempDir(), "umedge.toml")
	if err := os.WriteFile(def, []byte("# shipped\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created, err := Layout(data, def)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(data, LogDir), filepath.Join(data, TLSDir), filepath.Join(data, ConfigFile)}
	if !slices.Equal(created, want) {
		t.Errorf("first boot created %v, want %v", created, want)
	}
	if b, _ := os.ReadFile(filepath.Join(data, ConfigFile)); string(b) != "# shipped\n" {
		t.Errorf("copied config = %q", b)
	}

	// The operator edits the copy; later boots keep it and create nothing.
	if err := os.WriteFile(filepath.Join(data, ConfigFile), []byte("# mine\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	created, err = Layout(data, def)
	if err != nil || len(created) != 0 {
		t.Errorf("second boot: created %v, err %v; want nothing", created, err)
	}
	if b, _ := os.ReadFile(filepath.Join(data, ConfigFile)); string(b) != "# mine\n" {
		t.Errorf("the operator's config was overwritten: %q", b)
	}

	if _, err := Layout(t.TempDir(), filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("Layout without a default config succeeded")
	}
}

func TestDeviceCert(t *testing.T) {
	data := t.TempDir()
	now := time.Now()
	made, err := DeviceCert(data, "edge1.example.net", now)
	if err != nil || !made {
		t.Fatalf("first DeviceCert = %v, %v", made, err)
	}
	certPath, keyPath := filepath.Join(data, CertFile), filepath.Join(data, KeyFile)
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("edge1.example.net"); err != nil {
		t.Error(err)
	}
	if !leaf.NotBefore.Before(now) || leaf.NotAfter.Before(now.Add(9*365*24*time.Hour)) {
		t.Errorf("valid %v..%v, want from before now for about ten years", leaf.NotBefore, leaf.NotAfter)
	}
	before, _ := os.ReadFile(certPath)

	if made, err := DeviceCert(data, "edge1.example.net", now); err != nil || made {
		t.Errorf("second DeviceCert = %v, %v; want the pair kept", made, err)
	}
	if after, _ := os.ReadFile(certPath); string(after) != string(before) {
		t.Error("the certificate changed on a boot that needed no new one")
	}

	// A new FQDN, or a damaged file, gets a new pair.
	if made, err := DeviceCert(data, "edge2.example.net", now); err != nil || !made {
		t.Errorf("DeviceCert for a new name = %v, %v", made, err)
	}
	if err := os.WriteFile(certPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if made, err := DeviceCert(data, "edge2.example.net", now); err != nil || !made {
		t.Errorf("DeviceCert after damage = %v, %v", made, err)
	}
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Errorf("repaired pair does not load: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(data, TLSDir))
	if len(entries) != 2 {
		t.Errorf("tls dir holds %d entries, want the two files and no temporaries", len(entries))
	}
}

// TestDeviceCertMadeIn1970: a box without a battery-backed clock makes its
// certificate at first boot in 1970; once NTP has set the clock that pair
// is not valid now, and DeviceCert makes a new one (a certificate that is
// not yet valid at now, or expired, is likewise replaced).
func TestDeviceCertMadeIn1970(t *testing.T) {
	data := t.TempDir()
	epoch := time.Unix(3600, 0)
	if made, err := DeviceCert(data, "edge1.example.net", epoch); err != nil || !made {
		t.Fatalf("DeviceCert in 1970 = %v, %v", made, err)
	}
	now := time.Now()
	if made, err := DeviceCert(data, "edge1.example.net", now); err != nil || !made {
		t.Fatalf("DeviceCert after the clock was set = %v, %v; want a new pair", made, err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(data, CertFile), filepath.Join(data, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		t.Errorf("renewed certificate valid %v..%v, not now", leaf.NotBefore, leaf.NotAfter)
	}
	if made, err := DeviceCert(data, "edge1.example.net", now.Add(11*365*24*time.Hour)); err != nil || !made {
		t.Errorf("DeviceCert after it expired = %v, %v; want a new pair", made, err)
	}
}

// An FQDN longer than a CN may be (64) still gets a certificate for it:
// in the SAN, with no CN, which X.509 readers take.
func TestSelfSignedLongFQDN(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example"
	certPEM, _, err := SelfSigned(long, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "" || leaf.VerifyHostname(long) != nil {
		t.Fatalf("CN %q (%d chars), SAN %v", leaf.Subject.CommonName, len(leaf.Subject.CommonName), leaf.DNSNames)
	}
	short, _, err := SelfSigned("umedge.example.net", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ = pem.Decode(short)
	if leaf, err = x509.ParseCertificate(blk.Bytes); err != nil || leaf.Subject.CommonName != "umedge.example.net" {
		t.Fatalf("a short FQDN's CN %q, %v", leaf.Subject.CommonName, err)
	}
}
