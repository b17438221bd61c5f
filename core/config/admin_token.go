package config

import (
	"errors"
	"fmt"
	"os"
)

// minTokenLen is the shortest admin token accepted: 16 bytes of printable
// ASCII, e.g. `openssl rand -hex 16` gives 32.
const minTokenLen = 16

var (
	errTokenShort    = fmt.Errorf("shorter than %d characters", minTokenLen)
	errTokenChars    = errors.New("holds spaces or control characters inside")
	errTokenReadable = errors.New("readable by every user; chmod o-r it")
)

// Token reads the bearer token from TokenFile: the file's text without
// surrounding white space (so `openssl rand -hex 32 > FILE` works). It
// returns nil and no error when no token file is set. Errors name the file,
// never its content.
func (a Admin) Token() ([]byte, error) {
	if a.TokenFile == "" {
		return nil, nil
	}
	tok, err := readSecret(a.TokenFile, "admin token")
	if err != nil {
		return nil, err
	}
	if len(tok) < minTokenLen {
		return nil, fmt.Errorf("admin token %s: %w", a.TokenFile, errTokenShort)
	}
	return tok, nil
}

// readSecret reads a secret (an admin token, a HEP password) from file:
// its text without surrounding white space. A file every user may read,
// or a secret with spaces or control characters inside, is refused.
// Errors name the file as what, never its content.
func readSecret(file, what string) ([]byte, error) {
	data, err := readSmallFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("%s %s: %w", what, file, errTokenReadable)
	}
	secret := trimSpace(data)
	for _, c := range secret {
		if c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("%s %s: %w", what, file, errTokenChars)
		}
	}
	return secret, nil
}

// trimSpace drops ASCII white space at both ends.
func trimSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// adminToken checks admin.token_file: a remote admin listener must have
// one, and a file that is named must hold a usable token.
func (v *validator) adminToken(loopback bool) {
	a := v.c.Admin
	const path = "admin.token_file"
	if a.TokenFile == "" {
		if !loopback && a.AllowRemote {
			v.add(path, fmt.Errorf("%w: admin.listen %s is not loopback-only, so POST /reload and other mutating calls need a bearer token",
				ErrRequired, a.Listen), "admin.allow_remote", "admin.listen")
		}
		return
	}
	if _, err := a.Token(); err != nil {
		v.add(path, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
}
