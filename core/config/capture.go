package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Capture configures SIP capture to a HEPv3 collector (Homer, sngrep):
// every SIP message the front end and the B2BUA receive and send, TLS in
// clear. Off unless hep names a collector; there is no default one.
type Capture struct {
	HEP          string `toml:"hep"`           // collector host:port; "" = capture off
	HEPTransport string `toml:"hep_transport"` // udp|tcp
	HEPID        int64  `toml:"hep_id"`        // capture agent id, 0..4294967295
	// HEPPasswordFile holds the HEP auth key the collector checks; "" =
	// none. Like admin.token_file it must not be readable by every user.
	HEPPasswordFile string `toml:"hep_password_file"`
	HEPQueue        int    `toml:"hep_queue"` // messages waiting for the sender; more are dropped and counted
}

// maxHEPPassword is the longest HEP auth key: sngrep reads at most 100 bytes.
const maxHEPPassword = 100

var (
	errHEPPasswordEmpty = errors.New("is empty")
	errHEPPasswordLong  = fmt.Errorf("longer than %d bytes", maxHEPPassword)
)

// HEPPassword reads the auth key from HEPPasswordFile: the file's text
// without surrounding white space. It returns nil and no error when no
// file is set. Errors name the file, never its content.
func (c Capture) HEPPassword() ([]byte, error) {
	f := c.HEPPasswordFile
	if f == "" {
		return nil, nil
	}
	pw, err := readSecret(f, "hep password")
	if err != nil {
		return nil, err
	}
	switch {
	case len(pw) == 0:
		return nil, fmt.Errorf("hep password %s: %w", f, errHEPPasswordEmpty)
	case len(pw) > maxHEPPassword:
		return nil, fmt.Errorf("hep password %s: %w", f, errHEPPasswordLong)
	}
	return pw, nil
}

func (v *validator) capture() {
	c := v.c.Capture
	if c.HEPTransport != "udp" && c.HEPTransport != "tcp" {
		v.addf("capture.hep_transport", ErrInvalid, "%q is not one of udp, tcp", c.HEPTransport)
	}
	if c.HEPID < 0 || c.HEPID > 1<<32-1 {
		v.addf("capture.hep_id", ErrOutOfRange, "%d not in 0..4294967295", c.HEPID)
	}
	v.intRange("capture.hep_queue", c.HEPQueue, 16, 1_000_000)
	if c.HEPPasswordFile != "" {
		if _, err := c.HEPPassword(); err != nil {
			v.add("capture.hep_password_file", fmt.Errorf("%w: %w", ErrInvalid, err))
		}
	}
	if c.HEP == "" {
		return
	}
	const path = "capture.hep"
	host, port, err := net.SplitHostPort(c.HEP)
	if err != nil {
		v.add(path, fmt.Errorf("%w: %q is not host:port: %w", ErrInvalid, c.HEP, err))
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.addf(path, ErrOutOfRange, "port %q of %q not in 1..65535", port, c.HEP)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			v.addf(path, ErrInvalid, "%s is no collector's address", host)
		}
	} else if !validHostname(host) {
		v.addf(path, ErrInvalid, "%q is neither an IP address nor a host name", host)
	}
}
