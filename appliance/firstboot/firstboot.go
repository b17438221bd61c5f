// Package firstboot lays out the appliance's data partition: its
// directories, the operator's copy of the default config, and the device's
// TLS key with a self-signed certificate for its FQDN. Every step is skipped
// when its result is already there, so it runs on every boot and does
// something only on the first one (or after a part was lost).
package firstboot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The data partition's layout, relative to its mount point.
const (
	ConfigFile = "umedge.toml"        // the config edged runs with
	LogDir     = "log"                // logring's files
	TLSDir     = "tls"                // certificates and keys
	CertFile   = "tls/device.pem"     // the device certificate (self-signed)
	KeyFile    = "tls/device-key.pem" // its private key, mode 0600
)

// certLifetime is how long the self-signed device certificate is valid.
// The clock may not be set yet on first boot, so it starts a day early.
const certLifetime = 10 * 365 * 24 * time.Hour

// Layout creates the directories and, when dataDir has no config yet,
// copies defaultConfig there. It returns what it created.
func Layout(dataDir, defaultConfig string) ([]string, error) {
	var created []string
	for _, d := range []string{LogDir, TLSDir} {
		p := filepath.Join(dataDir, d)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(p, 0o750); err != nil {
			return created, fmt.Errorf("create %s: %w", p, err)
		}
		created = append(created, p)
	}
	cfg := filepath.Join(dataDir, ConfigFile)
	if _, err := os.Stat(cfg); errors.Is(err, fs.ErrNotExist) {
		data, err := os.ReadFile(defaultConfig)
		if err != nil {
			return created, fmt.Errorf("default config: %w", err)
		}
		if err := writeFile(cfg, data, 0o640); err != nil {
			return created, err
		}
		created = append(created, cfg)
	} else if err != nil {
		return created, fmt.Errorf("config %s: %w", cfg, err)
	}
	return created, nil
}

// DeviceCert makes sure dataDir holds a key and a certificate valid for
// fqdn at now: it keeps a pair that matches, names fqdn and is valid at
// now, and otherwise makes a new ECDSA P-256 key and a self-signed
// certificate for fqdn. One made while the clock was wrong (a box without
// a battery-backed clock boots in 1970) is thus replaced once it is right.
// It reports whether it made one.
func DeviceCert(dataDir, fqdn string, now time.Time) (bool, error) {
	certPath, keyPath := filepath.Join(dataDir, CertFile), filepath.Join(dataDir, KeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && leaf.VerifyHostname(fqdn) == nil &&
			!now.Before(leaf.NotBefore) && now.Before(leaf.NotAfter) {
			return false, nil
		}
	}
	certPEM, keyPEM, err := SelfSigned(fqdn, now)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o750); err != nil {
		return false, fmt.Errorf("create %s: %w", filepath.Dir(certPath), err)
	}
	// The key first: a certificate without its key is never left behind.
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return false, err
	}
	if err := writeFile(certPath, certPEM, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// SelfSigned returns a PEM certificate for fqdn, good for TLS servers and
// clients, and its PEM (PKCS #8) key.
func SelfSigned(fqdn string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fqdn, Organization: []string{"umedge appliance"}},
		DNSNames:              []string{fqdn},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("device certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFile writes data to path through a temporary file, synced, renamed
// into place and the directory synced: a power cut leaves the old file or
// the new one, never half of one.
func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after a successful rename there is nothing to remove
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // vfat does not support it; the rename is done all the same
		_ = d.Close()
	}
	return nil
}
