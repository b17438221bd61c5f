package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// writeToken writes text to a token file of the given mode in a temp dir.
func writeToken(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

const testToken = "0123456789abcdef0123456789abcdef"

func TestValidateAdminToken(t *testing.T) {
	good := writeToken(t, testToken+"\n", 0o600)
	short := writeToken(t, "tooshort\n", 0o600)
	spaced := writeToken(t, "0123456789abcdef 0123456789abcdef", 0o600)
	public := writeToken(t, testToken, 0o644)
	missing := filepath.Join(t.TempDir(), "none.token")

	runValidateCases(t, []validateCase{
		{name: "loopback needs no token", give: func(c *Config) { c.Admin.Listen = "127.0.0.1:9060" }},
		{name: "remote with a token", give: func(c *Config) {
			c.Admin.Listen, c.Admin.AllowRemote, c.Admin.TokenFile = "192.0.2.1:9060", true, good
		}},
		{name: "wildcard with a token", give: func(c *Config) {
			c.Admin.Listen, c.Admin.AllowRemote, c.Admin.TokenFile = ":9060", true, good
		}},
		{name: "loopback with a token", give: func(c *Config) { c.Admin.TokenFile = good }},
		{name: "remote without a token", give: func(c *Config) {
			c.Admin.Listen, c.Admin.AllowRemote = "192.0.2.1:9060", true
		}, wantPath: "admin.token_file", wantErr: ErrRequired, wantText: "not loopback-only"},
		{name: "wildcard without a token", give: func(c *Config) {
			c.Admin.Listen, c.Admin.AllowRemote = ":9060", true
		}, wantPath: "admin.token_file", wantErr: ErrRequired},
		{name: "host name without a token", give: func(c *Config) {
			c.Admin.Listen, c.Admin.AllowRemote = "admin.example.net:9060", true
		}, wantPath: "admin.token_file", wantErr: ErrRequired},
		{name: "missing token file", give: func(c *Config) { c.Admin.TokenFile = missing },
			wantPath: "admin.token_file", wantErr: fs.ErrNotExist},
		{name: "short token", give: func(c *Config) { c.Admin.TokenFile = short },
			wantPath: "admin.token_file", wantErr: errTokenShort},
		{name: "token with a space", give: func(c *Config) { c.Admin.TokenFile = spaced },
			wantPath: "admin.token_file", wantErr: errTokenChars},
		{name: "world-readable token", give: func(c *Config) { c.Admin.TokenFile = public },
			wantPath: "admin.token_file", wantErr: errTokenReadable},
		{name: "directory as token file", give: func(c *Config) { c.Admin.TokenFile = t.TempDir() },
			wantPath: "admin.token_file", wantErr: ErrInvalid},
	})
}

func TestAdminToken(t *testing.T) {
	t.Run("no file is no token", func(t *testing.T) {
		tok, err := Admin{}.Token()
		if tok != nil || err != nil {
			t.Errorf("Token() = %q, %v; want nil, nil", tok, err)
		}
	})
	t.Run("white space around the token is dropped", func(t *testing.T) {
		tok, err := Admin{TokenFile: writeToken(t, "\r\n "+testToken+" \n", 0o600)}.Token()
		if err != nil || !bytes.Equal(tok, []byte(testToken)) {
			t.Errorf("Token() = %q, %v; want %q", tok, err, testToken)
		}
	})
	t.Run("errors never show the token", func(t *testing.T) {
		secret := "s3cr3t s3cr3t s3cr3t"
		_, err := Admin{TokenFile: writeToken(t, secret, 0o600)}.Token()
		if !errors.Is(err, errTokenChars) || bytes.Contains([]byte(err.Error()), []byte("s3cr3t")) {
			t.Errorf("Token() error = %v; want errTokenChars without the token", err)
		}
	})
}
