package devpki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

func TestWriteMakesAChainThatVerifies(t *testing.T) {
	dir := t.TempDir()
	f, err := Write(dir, "umedge.local", "gw.example.net")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for name, p := range map[string]Pair{"umedge.local": {f.ServerCert, f.ServerKey}, "gw.example.net": f.Clients["gw.example.net"]} {
		pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not verify: %v", name, err)
		}
	}
	before, _ := os.ReadFile(f.ServerCert)
	if _, err := Write(dir, "umedge.local", "gw.example.net"); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(f.ServerCert); string(after) != string(before) {
		t.Error("a second Write replaced existing certificates")
	}
}
