package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/config"
)

const cfgToken = "config-test-token-0123456789"

// fakeConfigFile keeps the file in memory; err and reloadErr are what the
// next Replace answers.
type fakeConfigFile struct {
	mu        sync.Mutex
	data      []byte
	err       error
	reloadErr error
	inPart    bool
	replaced  int
}

func (f *fakeConfigFile) Read() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.data), nil
}

func (f *fakeConfigFile) Replace(_ context.Context, data []byte) (ConfigWritten, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return ConfigWritten{}, f.err
	}
	f.data = bytes.Clone(data)
	f.replaced++
	return ConfigWritten{File: "/data/umedge.toml", Prev: "/data/umedge.toml.prev", ReloadErr: f.reloadErr, InPart: f.inPart}, nil
}

func (f *fakeConfigFile) state() ([]byte, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.data), f.replaced
}

func tokenFunc(tok string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(tok), nil }
}

type cfgReq struct {
	method, token, ctype string
	body                 io.Reader
	length               int64 // 0: the body's own; -1: chunked
	origin               string
}

func doConfig(t *testing.T, s *Server, r cfgReq) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, "http://"+s.Addr()+ConfigPath, r.body)
	if err != nil {
		t.Fatal(err)
	}
	if r.length != 0 {
		req.ContentLength = r.length
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestConfigMaxBytesIsConfigs(t *testing.T) {
	if ConfigMaxBytes != config.MaxFileBytes {
		t.Fatalf("ConfigMaxBytes = %d, config.MaxFileBytes = %d", ConfigMaxBytes, config.MaxFileBytes)
	}
}

// TestConfigNeedsToken: with no token set, GET and PUT /config are refused
// on a loopback-only listener too (where POST /reload goes through).
func TestConfigNeedsToken(t *testing.T) {
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", ConfigFile: f})
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		code, text := doConfig(t, s, cfgReq{method: m, ctype: "application/toml", body: strings.NewReader("new")})
		if code != http.StatusForbidden || (m != http.MethodHead && !strings.Contains(text, "token")) {
			t.Errorf("%s /config with no token set = %d %q, want 403 naming the token", m, code, text)
		}
	}
	if got, n := f.state(); string(got) != "old" || n != 0 {
		t.Fatalf("file = %q after %d replaces", got, n)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/reload", nil)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload on loopback with no token = %d, want 200 (the rule /config does not follow)", resp.StatusCode)
	}
}

// TestConfigGuard: the token, a content type no form sends, and the same
// origin.
func TestConfigGuard(t *testing.T) {
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	tests := []struct {
		name string
		req  cfgReq
		want int
	}{
		{"get without token", cfgReq{method: http.MethodGet}, http.StatusUnauthorized},
		{"get wrong token", cfgReq{method: http.MethodGet, token: "nope"}, http.StatusUnauthorized},
		{"put without token", cfgReq{method: http.MethodPut, ctype: "application/toml"}, http.StatusUnauthorized},
		{"put wrong token", cfgReq{method: http.MethodPut, token: "nope", ctype: "application/toml"}, http.StatusUnauthorized},
		{"put as a form", cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"put as text", cfgReq{method: http.MethodPut, token: cfgToken, ctype: "text/plain"}, http.StatusUnsupportedMediaType},
		{"put without type", cfgReq{method: http.MethodPut, token: cfgToken}, http.StatusUnsupportedMediaType},
		{"put cross-site", cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", origin: "http://evil.example"}, http.StatusForbidden},
		{"post", cfgReq{method: http.MethodPost, token: cfgToken, ctype: "application/toml"}, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.body = strings.NewReader("new")
			if code, text := doConfig(t, s, tt.req); code != tt.want {
				t.Fatalf("= %d %q, want %d", code, text, tt.want)
			}
		})
	}
	if got, n := f.state(); string(got) != "old" || n != 0 {
		t.Fatalf("file = %q after %d replaces", got, n)
	}
	if code, text := doConfig(t, s, cfgReq{method: http.MethodGet, token: cfgToken}); code != http.StatusOK || text != "old" {
		t.Fatalf("GET with the token = %d %q", code, text)
	}
	for _, ct := range []string{"application/toml", "application/octet-stream"} {
		code, text := doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: ct, body: strings.NewReader("new " + ct)})
		if code != http.StatusOK || !strings.Contains(text, "reloaded") || !strings.Contains(text, "umedge.toml.prev") {
			t.Fatalf("PUT as %s = %d %q, want 200 reloaded", ct, code, text)
		}
		if got, _ := f.state(); string(got) != "new "+ct {
			t.Fatalf("file = %q", got)
		}
	}
}

// TestConfigUploadAnswers: what Replace says becomes the status: invalid
// 422 with the problems, a full disk 507, a reload failing after the
// write 500 saying the file is written.
func TestConfigUploadAnswers(t *testing.T) {
	f := &fakeConfigFile{}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	put := func() (int, string) {
		return doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", body: strings.NewReader("x = 1")})
	}
	tests := []struct {
		name           string
		err, reloadErr error
		inPart         bool
		want           int
		text, not      string
	}{
		{"invalid", fmt.Errorf("%w:\n/data/umedge.toml:3: log.level: bad", ErrConfigInvalid), nil, false, http.StatusUnprocessableEntity, "/data/umedge.toml:3: log.level: bad", ""},
		{"full disk", fmt.Errorf("write /data/umedge.toml: %w", &os.PathError{Op: "write", Path: "/data/.umedge.toml.1", Err: syscall.ENOSPC}), nil, false, http.StatusInsufficientStorage, "no space left on device", ""},
		{"other write error", errors.New("write /data/umedge.toml: read-only file system"), nil, false, http.StatusInternalServerError, "read-only", ""},
		{"reload fails", nil, errors.New("these changes need a restart: log.format"), false, http.StatusInternalServerError, "config written to /data/umedge.toml (the previous file kept as /data/umedge.toml.prev), but the reload failed: the old config runs", ""},
		{"reload applies in part", nil, errors.New("config applied in part: admin listen 127.0.0.1:9061: address already in use"), true, http.StatusInternalServerError, "but the reload failed: it applied in part", "the old config runs"},
		{"reloaded", nil, nil, false, http.StatusOK, "reloaded", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.err, f.reloadErr, f.inPart = tt.err, tt.reloadErr, tt.inPart
			f.mu.Unlock()
			code, text := put()
			if code != tt.want || !strings.Contains(text, tt.text) {
				t.Fatalf("= %d %q, want %d with %q", code, text, tt.want, tt.text)
			}
			if tt.not != "" && strings.Contains(text, tt.not) {
				t.Fatalf("= %q, saying %q", text, tt.not)
			}
		})
	}
}

// TestConfigUploadTooLarge: over ConfigMaxBytes is 413, whether Content-Length
// says so or a chunked body runs over.
func TestConfigUploadTooLarge(t *testing.T) {
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})
	big := bytes.Repeat([]byte("#"), ConfigMaxBytes+1)
	for _, length := range []int64{0, -1} {
		code, text := doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", body: bytes.NewReader(big), length: length})
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("PUT of %d bytes (length %d) = %d %q, want 413", len(big), length, code, text)
		}
	}
	if got, n := f.state(); string(got) != "old" || n != 0 {
		t.Fatalf("file = %q after %d replaces", got, n)
	}
	exact := bytes.Repeat([]byte("#"), ConfigMaxBytes)
	if code, text := doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", body: bytes.NewReader(exact), length: -1}); code != http.StatusOK {
		t.Fatalf("PUT of exactly %d bytes = %d %q, want 200", len(exact), code, text)
	}
}

// TestConfigUploadStalled: an upload that stops sending holds the one
// upload slot (another gets 409) until it has sent nothing for the idle
// time, then gets 408; nothing is replaced, and the next upload goes
// through.
func TestConfigUploadStalled(t *testing.T) {
	defer func(d time.Duration) { configIdle = d }(configIdle)
	configIdle = 500 * time.Millisecond
	f := &fakeConfigFile{data: []byte("old")}
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: f})

	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /config HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/toml\r\nContent-Length: 100\r\n\r\n[log]\n", s.Addr(), cfgToken)
	time.Sleep(150 * time.Millisecond)
	put := func() (int, string) {
		return doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "application/toml", body: strings.NewReader("new")})
	}
	if code, text := put(); code != http.StatusConflict {
		t.Fatalf("PUT while another stalls = %d %q, want 409", code, text)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, _ := io.ReadAll(c)
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 408")) || !bytes.Contains(answer, []byte("stalled")) {
		t.Fatalf("answer to a stalled upload: %q", answer)
	}
	if got, n := f.state(); string(got) != "old" || n != 0 {
		t.Fatalf("file = %q after %d replaces", got, n)
	}
	if code, text := put(); code != http.StatusOK {
		t.Fatalf("PUT after the stall = %d %q, want 200", code, text)
	}
}

// TestConfigUploadTypeRefusal: a refused upload type is answered with what
// the upload takes, not with the rule of the other mutating calls (no body
// or JSON), which the upload does not follow.
func TestConfigUploadTypeRefusal(t *testing.T) {
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0", Token: tokenFunc(cfgToken), ConfigFile: &fakeConfigFile{}})
	code, text := doConfig(t, s, cfgReq{method: http.MethodPut, token: cfgToken, ctype: "text/plain", body: strings.NewReader("x = 1")})
	if code != http.StatusUnsupportedMediaType || !strings.Contains(text, "application/toml") || strings.Contains(text, "JSON") {
		t.Fatalf("PUT as text/plain = %d %q, want 415 naming application/toml and not JSON", code, text)
	}
}
