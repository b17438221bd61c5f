package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throw-away CA, a leaf certificate signed by it, and some
// broken files, all written to a test's temporary directory.
type testPKI struct {
	Dir      string
	CA       string // CA certificate (PEM), usable as client_ca
	Cert     string // leaf + CA chain (PEM)
	Key      string // leaf private key (PKCS#8 PEM)
	ECKey    string // the same leaf key in SEC 1 "EC PRIVATE KEY" form
	OtherKey string // a key that does not belong to Cert
	Garbage  string // a file that holds no PEM at all
	Missing  string // a path that does not exist
}

// newTestPKI writes a fresh PKI whose leaf is valid for dnsNames.
func newTestPKI(t testing.TB, dnsNames ...string) testPKI {
	t.Helper()
	dir := t.TempDir()
	p := testPKI{
		Dir:      dir,
		CA:       filepath.Join(dir, "ca.pem"),
		Cert:     filepath.Join(dir, "leaf.crt"),
		Key:      filepath.Join(dir, "leaf.key"),
		ECKey:    filepath.Join(dir, "leaf-ec.key"),
		OtherKey: filepath.Join(dir, "other.key"),
		Garbage:  filepath.Join(dir, "garbage.pem"),
		Missing:  filepath.Join(dir, "missing.pem"),
	}
	caKey := newKey(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "umedge test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse CA: %v", err)
	}
	leafKey := newKey(t)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatalf("create leaf: %v", err)
	}
	writePEM(t, p.CA, pemBlock("CERTIFICATE", caDER))
	writePEM(t, p.Cert, pemBlock("CERTIFICATE", leafDER), pemBlock("CERTIFICATE", caDER))
	writePEM(t, p.Key, pkcs8(t, leafKey))
	ecDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatalf("marshal EC key: %v", err)
	}
	writePEM(t, p.ECKey, pemBlock("EC PRIVATE KEY", ecDER))
	writePEM(t, p.OtherKey, pkcs8(t, newKey(t)))
	if err := os.WriteFile(p.Garbage, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return k
}

func pkcs8(t testing.TB, k *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) *pem.Block { return &pem.Block{Type: typ, Bytes: der} }

func writePEM(t testing.TB, path string, blocks ...*pem.Block) {
	t.Helper()
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
