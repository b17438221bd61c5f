// Package devpki makes a throw-away certificate authority with server and
// client certificates, for the demo config and for tests of mutual TLS.
// Nothing it makes is fit for production.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files names what Write made, all PEM.
type Files struct {
	CA                    string // the CA certificate: sip.tls.client_ca, and a peer's trust anchor
	ServerCert, ServerKey string
	Clients               map[string]Pair // by DNS name
}

// Pair is a certificate and its key.
type Pair struct{ Cert, Key string }

// Write makes, in dir, a CA, a server certificate for server and a client
// certificate for each client name, unless dir/ca.pem exists already, in
// which case it only names the files. Certificates are valid for a year
// and carry 127.0.0.1 and ::1 as well as the DNS name.
func Write(dir, server string, clients ...string) (Files, error) {
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		Clients:    map[string]Pair{},
	}
	for _, c := range clients {
		f.Clients[c] = Pair{Cert: filepath.Join(dir, "client-"+c+".pem"), Key: filepath.Join(dir, "client-"+c+"-key.pem")}
	}
	if _, err := os.Stat(f.CA); err == nil {
		return f, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("make %s: %w", dir, err)
	}
	caKey, caCert, err := newCA()
	if err != nil {
		return f, err
	}
	if err := writePEM(f.CA, "CERTIFICATE", caCert.Raw); err != nil {
		return f, err
	}
	// The appliance's certificate is also its client certificate: as an
	// SBC it calls back ends over mutual TLS (R-SEC-3), as Exchange UM
	// servers do with theirs.
	serverUse := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if err := issue(caCert, caKey, server, serverUse, f.ServerCert, f.ServerKey); err != nil {
		return f, err
	}
	for _, c := range clients {
		if err := issue(caCert, caKey, c, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, f.Clients[c].Cert, f.Clients[c].Key); err != nil {
			return f, err
		}
	}
	return f, nil
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "umedge demo CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage []x509.ExtKeyUsage, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("issue certificate for %s: %w", name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", kder)
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
