package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// maxPEMFile bounds what we read from a certificate or key file.
const maxPEMFile = 1 << 20

// MinVersionID returns the crypto/tls version constant for MinVersion
// (tls.VersionTLS12 for anything but "1.3"; Validate rejects other values).
func (t TLS) MinVersionID() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// CipherSuiteIDs returns the crypto/tls IDs of CipherSuites, skipping names
// that Validate rejects; nil means Go's defaults.
func (t TLS) CipherSuiteIDs() []uint16 {
	var ids []uint16
	for _, name := range t.CipherSuites {
		if cs := secureSuite(name); cs != nil {
			ids = append(ids, cs.ID)
		}
	}
	return ids
}

// secureSuite finds a configurable TLS 1.2 suite among Go's secure ones.
func secureSuite(name string) *tls.CipherSuite {
	for _, cs := range tls.CipherSuites() {
		if cs.Name == name && slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			return cs
		}
	}
	return nil
}

// tlsSettings checks min_version and cipher_suites.
func (v *validator) tlsSettings() {
	t := v.c.SIP.TLS
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.addf("sip.tls.min_version", ErrInvalid, "%q is not one of 1.2, 1.3", t.MinVersion)
	}
	if t.MinVersion == "1.3" && len(t.CipherSuites) > 0 {
		v.addf("sip.tls.cipher_suites", ErrConflict, "TLS 1.3 suites are not configurable; with min_version 1.3 leave cipher_suites empty")
	}
	for i, name := range t.CipherSuites {
		path := indexKey("sip.tls.cipher_suites", i)
		if j := slices.Index(t.CipherSuites[:i], name); j >= 0 {
			v.addf(path, ErrConflict, "%s is listed twice (also [%d])", name, j)
			continue
		}
		if secureSuite(name) != nil {
			continue
		}
		switch {
		case slices.ContainsFunc(tls.InsecureCipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == name }):
			v.addf(path, ErrInvalid, "%s is an insecure cipher suite", name)
		case slices.ContainsFunc(tls.CipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == name }):
			v.addf(path, ErrInvalid, "%s is a TLS 1.3 suite, which Go does not let us configure", name)
		default:
			v.addf(path, ErrInvalid, "unknown cipher suite %q", name)
		}
	}
}

// tlsFiles checks the certificate, key and client CA files. TLS modes need
// all three; a file that is named is checked in any mode, so a broken file
// shows up before the mode is switched.
func (v *validator) tlsFiles() {
	s := v.c.SIP
	t := s.TLS
	need := func(path, val, why string) {
		if val == "" {
			v.add(path, fmt.Errorf("%w: %s", ErrRequired, why), "sip.mode")
		}
	}
	if s.Mode.UsesTLS() {
		why := fmt.Sprintf("sip.mode %q listens on TLS", s.Mode)
		need("sip.tls.cert", t.Cert, why)
		need("sip.tls.key", t.Key, why)
		need("sip.tls.client_ca", t.ClientCA, why+" with mutual TLS")
	} else {
		if t.Key != "" {
			need("sip.tls.cert", t.Cert, "sip.tls.key is set")
		}
		if t.Cert != "" {
			need("sip.tls.key", t.Key, "sip.tls.cert is set")
		}
	}

	var (
		leaf            *x509.Certificate
		certPEM, keyPEM []byte
		certOK, keyOK   bool
		certErr, keyErr error
	)
	if t.Cert != "" {
		if certPEM, certErr = readSmallFile(t.Cert); certErr == nil {
			if leaf, certErr = parseCertificates(certPEM); certErr != nil {
				certErr = fmt.Errorf("%s: %w", t.Cert, certErr)
			}
		}
		if certErr != nil {
			v.add("sip.tls.cert", fmt.Errorf("%w: load certificate: %w", ErrInvalid, certErr))
		}
		certOK = certErr == nil
	}
	if t.Key != "" {
		if keyPEM, keyErr = readSmallFile(t.Key); keyErr == nil {
			if keyErr = parsePrivateKey(keyPEM); keyErr != nil {
				keyErr = fmt.Errorf("%s: %w", t.Key, keyErr)
			}
		}
		if keyErr != nil {
			v.add("sip.tls.key", fmt.Errorf("%w: load private key: %w", ErrInvalid, keyErr))
		}
		keyOK = keyErr == nil
	}
	if certOK && keyOK {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			v.add("sip.tls.key", fmt.Errorf("%w: %s does not belong to certificate %s: %w", ErrInvalid, t.Key, t.Cert, err))
		}
	}
	if leaf != nil && validHostname(s.FQDN) {
		if err := leaf.VerifyHostname(s.FQDN); err != nil {
			v.add("sip.tls.cert", fmt.Errorf("%w: %s is not valid for sip.fqdn: %w", ErrConflict, t.Cert, err))
		}
	}
	if t.ClientCA != "" {
		data, err := readSmallFile(t.ClientCA)
		if err == nil {
			if _, err = parseCertificates(data); err != nil {
				err = fmt.Errorf("%s: %w", t.ClientCA, err)
			}
		}
		if err != nil {
			v.add("sip.tls.client_ca", fmt.Errorf("%w: load CA bundle: %w", ErrInvalid, err))
		}
	}
}

var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = errors.New("larger than 1 MiB")
	errNoPEM      = errors.New("no PEM block")
)

// readSmallFile reads a regular file of at most maxPEMFile bytes. Devices
// and pipes are refused, so a bad path cannot block a (re)load.
func readSmallFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, errNotRegular)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s: %w", path, errTooLarge)
	}
	return data, nil
}

// parseCertificates parses every CERTIFICATE block and returns the first.
func parseCertificates(data []byte) (*x509.Certificate, error) {
	var first *x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if first == nil {
			first = cert
		}
	}
	if first == nil {
		return nil, fmt.Errorf("%w: want a PEM CERTIFICATE", errNoPEM)
	}
	return first, nil
}

// parsePrivateKey checks that data holds a PKCS#8, PKCS#1 or SEC 1 key.
// errKeyFormat means a PEM block holds no private key Go can read.
var errKeyFormat = errors.New("unknown private key format")

func parsePrivateKey(data []byte) error {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return fmt.Errorf("%w: want a PEM PRIVATE KEY", errNoPEM)
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("%w: %s block is not PKCS#8, PKCS#1 or EC", errKeyFormat, block.Type)
	}
}
