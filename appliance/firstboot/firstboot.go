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
	"encoding/hex"
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
// copies defaultConfig there. It returns what it created. Everything is
// done inside dataDir (os.Root): a symlink on the partition that leads
// out of it is an error, never followed to write elsewhere. A step that
// fails does not stop the others; the error names every one.
func Layout(dataDir, defaultConfig string) ([]string, error) {
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data partition: %w", err)
	}
	defer root.Close()
	var created []string
	var errs []error
	for _, d := range []string{LogDir, TLSDir} {
		p := filepath.Join(dataDir, d)
		if _, err := root.Stat(d); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if err := root.MkdirAll(d, 0o750); err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", p, err))
			continue
		}
		created = append(created, p)
	}
	cfg := filepath.Join(dataDir, ConfigFile)
	switch _, err := root.Stat(ConfigFile); {
	case errors.Is(err, fs.ErrNotExist):
		data, err := os.ReadFile(defaultConfig)
		if err != nil {
			errs = append(errs, fmt.Errorf("default config: %w", err))
			break
		}
		if err := writeFile(root, dataDir, ConfigFile, data, 0o640); err != nil {
			errs = append(errs, err)
			break
		}
		created = append(created, cfg)
	case err != nil:
		errs = append(errs, fmt.Errorf("config %s: %w", cfg, err))
	}
	return created, errors.Join(errs...)
}

// DeviceCert makes sure dataDir holds a key and a certificate valid for
// fqdn at now: it keeps a pair that matches, names fqdn and is valid at
// now, and otherwise makes a new ECDSA P-256 key and a self-signed
// certificate for fqdn. One made while the clock was wrong (a box without
// a battery-backed clock boots in 1970) is thus replaced once it is right.
// It reports whether it made one.
func DeviceCert(dataDir, fqdn string, now time.Time) (bool, error) {
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return false, fmt.Errorf("data partition: %w", err)
	}
	defer root.Close()
	if certPEM, err := root.ReadFile(CertFile); err == nil {
		if keyPEM, err := root.ReadFile(KeyFile); err == nil {
			if pair, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
				if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && leaf.VerifyHostname(fqdn) == nil &&
					!now.Before(leaf.NotBefore) && now.Before(leaf.NotAfter) {
					return false, nil
				}
			}
		}
	}
	certPEM, keyPEM, err := SelfSigned(fqdn, now)
	if err != nil {
		return false, err
	}
	if err := root.MkdirAll(TLSDir, 0o750); err != nil {
		return false, fmt.Errorf("create %s: %w", filepath.Join(dataDir, TLSDir), err)
	}
	// The key first: a certificate without its key is never left behind.
	if err := writeFile(root, dataDir, KeyFile, keyPEM, 0o600); err != nil {
		return false, err
	}
	if err := writeFile(root, dataDir, CertFile, certPEM, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// commonName is fqdn as the certificate's CN, empty when it is longer than
// X.509 lets a CN be (64 characters, RFC 5280 ub-common-name): the name is
// in the DNS SAN either way, which is what clients check.
func commonName(fqdn string) string {
	if len(fqdn) > 64 {
		return ""
	}
	return fqdn
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
		Subject:               pkix.Name{CommonName: commonName(fqdn), Organization: []string{"umedge appliance"}},
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

// writeFile writes data to name inside root (the data partition mounted
// at dataDir, for the messages) through a temporary file, synced,
// renamed into place and the directory synced: a power cut leaves the
// old file or the new one, never half of one. The rename replaces a
// symlink at name rather than writing where it points.
func writeFile(root *os.Root, dataDir, name string, data []byte, mode os.FileMode) error {
	path := filepath.Join(dataDir, name)
	dir := filepath.Dir(name)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(name)+"."+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = root.Remove(tmp) }() // after a successful rename there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := root.Open(dir); err == nil {
		_ = d.Sync() // vfat does not support it; the rename is done all the same
		_ = d.Close()
	}
	return nil
}
