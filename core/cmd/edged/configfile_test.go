package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/testutil"
)

const uploadToken = "config-upload-token-0123456789"

// uploadSite is an edged with no plugins started in process on a config
// reached through a symlink, as on the appliance (/run/umedge/umedge.toml
// pointing at /data/umedge.toml).
type uploadSite struct {
	d          *daemon
	file, link string
	store      string // -config-store; "" = none
	base       string // the admin API's URL
	secrets    string // where the token file is
	port       int    // the admin listener's
}

// uploadConfig is a config for the site at log level level.
func (s *uploadSite) config(level string) string {
	return fmt.Sprintf(`[log]
level = %q
[admin]
listen = "127.0.0.1:%d"
token_file = %q
[sip]
mode = "tcp"
[plugin_host]
dir = %q
`, level, s.port, filepath.Join(s.secrets, "admin.token"), s.secrets)
}

// newUploadSite starts edged on a config in dataDir.
func newUploadSite(t *testing.T, dataDir string) *uploadSite {
	t.Helper()
	return newUploadSiteStore(t, dataDir, "")
}

// newUploadSiteStore is newUploadSite with -config-store store.
func newUploadSiteStore(t *testing.T, dataDir, store string) *uploadSite {
	t.Helper()
	s := &uploadSite{file: filepath.Join(dataDir, "umedge.toml"), link: filepath.Join(t.TempDir(), "umedge.toml"), store: store,
		secrets: t.TempDir(), port: testutil.FreeUDPTCPPort(t, 1)}
	if err := os.WriteFile(filepath.Join(s.secrets, "admin.token"), []byte(uploadToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.file, []byte(s.config("info")), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.file, s.link); err != nil {
		t.Fatal(err)
	}
	d, err := start(context.Background(), s.link, s.store, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	s.d, s.base = d, "http://"+d.admin.Addr()
	return s
}

func (s *uploadSite) do(t *testing.T, method, token string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+"/config", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/toml")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *uploadSite) onDisk(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigUpload: PUT /config checks the file, writes it over the file
// the -config symlink points at (the link stays), keeps the old one as
// .prev, and reloads (the new log level runs); GET /config returns it. A
// file that fails the check is refused with 422 naming the file, line and
// key, and nothing is written; without the token both are refused.
func TestConfigUpload(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	old := s.onDisk(t, s.file)

	if code, text := s.do(t, http.MethodGet, "", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /config without the token = %d %q, want 401", code, text)
	}
	if code, text := s.do(t, http.MethodPut, "wrong-token", []byte(s.config("debug"))); code != http.StatusUnauthorized {
		t.Fatalf("PUT /config with a wrong token = %d %q, want 401", code, text)
	}
	if code, text := s.do(t, http.MethodGet, uploadToken, nil); code != http.StatusOK || text != old {
		t.Fatalf("GET /config = %d %q, want 200 and the file", code, text)
	}

	bad := strings.Replace(s.config("debug"), `level = "debug"`, `level = "loud"`, 1)
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(bad))
	if want := s.file + ":2: log.level:"; code != http.StatusUnprocessableEntity || !strings.Contains(text, want) {
		t.Fatalf("PUT of a bad config = %d %q, want 422 with %q", code, text, want)
	}
	syntax := s.config("debug") + "[admin\n"
	code, text = s.do(t, http.MethodPut, uploadToken, []byte(syntax))
	if want := s.file + ":11:"; code != http.StatusUnprocessableEntity || !strings.Contains(text, want) {
		t.Fatalf("PUT of a config with a syntax error = %d %q, want 422 with %q", code, text, want)
	}
	// The plugins' checks too, as `edged config check` has them.
	if err := os.WriteFile(filepath.Join(s.secrets, "umedge-plugin-umrouter"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pinned := s.config("debug") + "[plugins.umrouter]\nkind = \"router\"\nbinary = \"umedge-plugin-umrouter\"\nsha256 = \"" + strings.Repeat("ab", 32) + "\"\n"
	code, text = s.do(t, http.MethodPut, uploadToken, []byte(pinned))
	if want := s.file + ":13: plugins.umrouter.sha256: pluginhost: sha256 mismatch"; code != http.StatusUnprocessableEntity || !strings.Contains(text, want) {
		t.Fatalf("PUT of a config with a wrong plugin pin = %d %q, want 422 with %q", code, text, want)
	}
	if got := s.onDisk(t, s.file); got != old {
		t.Fatalf("a refused upload changed the file:\n%s", got)
	}
	if _, err := os.Stat(s.file + ".prev"); !os.IsNotExist(err) {
		t.Fatalf("a refused upload wrote .prev: %v", err)
	}
	if got := s.d.cfg.Load().Log.Level; got != "info" {
		t.Fatalf("log level after refused uploads = %q", got)
	}

	good := s.config("debug")
	code, text = s.do(t, http.MethodPut, uploadToken, []byte(good))
	if code != http.StatusOK || !strings.Contains(text, "reloaded") || !strings.Contains(text, s.file+".prev") {
		t.Fatalf("PUT of a good config = %d %q, want 200, reloaded, naming .prev", code, text)
	}
	if got := s.onDisk(t, s.file); got != good {
		t.Fatalf("file after the upload:\n%s", got)
	}
	if got := s.onDisk(t, s.file+".prev"); got != old {
		t.Fatalf(".prev after the upload:\n%s", got)
	}
	if fi, err := os.Lstat(s.link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the -config symlink was replaced: %v %v", fi, err)
	}
	if fi, err := os.Stat(s.file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("the new file's mode: %v %v, want the old 0640", fi, err)
	}
	if got := s.d.cfg.Load().Log.Level; got != "debug" {
		t.Fatalf("log level after the upload = %q, want debug: no reload", got)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.file), ".*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if code, text := s.do(t, http.MethodGet, uploadToken, nil); code != http.StatusOK || text != good {
		t.Fatalf("GET /config after the upload = %d %q", code, text)
	}
}

// TestConfigUploadNeedsRestart: a file that passes the check but changes
// what only a restart applies is written, and the answer says that the
// reload failed and the old config runs.
func TestConfigUploadNeedsRestart(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	next := strings.Replace(s.config("debug"), "[log]\n", "[log]\nformat = \"json\"\n", 1)
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(next))
	if code != http.StatusInternalServerError || !strings.Contains(text, "written") || !strings.Contains(text, "log.format") {
		t.Fatalf("PUT of a restart-only change = %d %q, want 500 saying written and naming log.format", code, text)
	}
	if got := s.onDisk(t, s.file); got != next {
		t.Fatalf("file after the upload:\n%s", got)
	}
	if got := s.d.cfg.Load().Log.Level; got != "info" {
		t.Fatalf("log level = %q: the refused reload applied part of the file", got)
	}
}

// TestConfigUploadFullDisk: on a full data partition the upload fails with
// 507 and the reason, the file in force and the running config stay, and
// no temporary file is left.
func TestConfigUploadFullDisk(t *testing.T) {
	data := testutil.SmallDisk(t, 16)
	s := newUploadSite(t, data)
	old := s.onDisk(t, s.file)
	fill, err := os.Create(filepath.Join(data, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := fill.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	fill.Close()

	code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
	if code != http.StatusInsufficientStorage || !strings.Contains(text, "no space left") {
		t.Fatalf("PUT on a full disk = %d %q, want 507 with the reason", code, text)
	}
	if got := s.onDisk(t, s.file); got != old {
		t.Fatalf("a failed upload changed the file:\n%s", got)
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".*")); len(left) != 0 {
		t.Fatalf("temporary files left on the full disk: %v", left)
	}
	if got := s.d.cfg.Load().Log.Level; got != "info" {
		t.Fatalf("log level = %q after a failed upload", got)
	}
	// Room again: the upload goes through.
	if err := os.Remove(filepath.Join(data, "fill")); err != nil {
		t.Fatal(err)
	}
	if code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug"))); code != http.StatusOK {
		t.Fatalf("PUT once there is room = %d %q", code, text)
	}
}

// TestConfigUploadWhileReloading: reloads (SIGHUP's code) running while
// uploads replace the file always read a whole file, the old or the new:
// none fails.
func TestConfigUploadWhileReloading(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	// Pad the file so a reader could catch a write half done.
	pad := "#" + strings.Repeat(" padding", 16<<10) + "\n"
	stop := make(chan struct{})
	errs := make(chan error, 1)
	reloads := 0
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.d.Reload(context.Background()); err != nil {
				errs <- err
				return
			}
			reloads++
		}
	}()
	for i := range 20 {
		level := []string{"debug", "info"}[i%2]
		if code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config(level)+pad)); code != http.StatusOK {
			t.Fatalf("upload %d = %d %q", i, code, text)
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatalf("a reload during the uploads failed: %v", err)
	}
	t.Logf("%d reloads during 20 uploads", reloads)
}

// TestConfigUploadToTheStore: on the appliance after a fallback, edged runs
// the shipped config (the link points at it, on a read-only root) and
// -config-store names the operator's file, which did not load. An upload
// that passes the check is written there — the shipped file untouched,
// nothing reloaded, the answer says so — for the init to apply; a broken
// one is refused as everywhere, the operator's file left as it was.
func TestConfigUploadToTheStore(t *testing.T) {
	data := t.TempDir()
	opFile := filepath.Join(data, "umedge.toml")
	if err := os.WriteFile(opFile, []byte("[log]\nlevel = 7\n"), 0o600); err != nil { // what made the init fall back
		t.Fatal(err)
	}
	shipped := t.TempDir()
	s := newUploadSiteStore(t, shipped, opFile)
	shippedText := s.onDisk(t, s.file)
	if code, text := s.do(t, http.MethodPut, uploadToken, []byte("[log]\nlevel = \"loud\"\n")); code != http.StatusUnprocessableEntity {
		t.Fatalf("a broken upload = %d %q, want 422", code, text)
	}
	if got := s.onDisk(t, opFile); got != "[log]\nlevel = 7\n" {
		t.Fatalf("a refused upload changed the operator's file: %q", got)
	}
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
	if code != http.StatusOK || !strings.Contains(text, "config written to "+opFile) || !strings.Contains(text, "not reloaded") {
		t.Fatalf("upload to the store = %d %q, want 200 saying it is written there and not reloaded", code, text)
	}
	if got := s.onDisk(t, opFile); got != s.config("debug") {
		t.Fatalf("the operator's file is %q", got)
	}
	if got := s.onDisk(t, s.file); got != shippedText {
		t.Fatal("the shipped config was written")
	}
	if s.d.level.Level().String() != "INFO" {
		t.Fatalf("running level %s: the upload was applied by edged itself", s.d.level.Level())
	}
	if code, text := s.do(t, http.MethodGet, uploadToken, nil); code != http.StatusOK || text != shippedText {
		t.Fatalf("GET /config = %d, want the file in force", code)
	}
}

// The token buys settings, not the box: an upload that points plugins at
// another directory, the CDRs at the token file or the token at a file of
// its own is refused naming the key, before anything it names is opened,
// and nothing is written.
func TestConfigUploadMayNotMovePaths(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	old := s.onDisk(t, s.file)
	for _, c := range []struct{ key, extra string }{
		{"plugin_host.dir", "[plugin_host]\ndir = \"/usr/bin\"\n"},
		{"sbc.cdr_file", "[sbc]\ncdr_file = " + strconv.Quote(filepath.Join(s.secrets, "admin.token")) + "\n"},
		{"appliance.watchdog", "[appliance]\nwatchdog = \"/dev/sda\"\n"},
	} {
		body := strings.Replace(s.config("debug"), "[plugin_host]\ndir = "+strconv.Quote(s.secrets)+"\n", "", 1) + c.extra
		if c.key != "plugin_host.dir" {
			body = s.config("debug") + c.extra
		}
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(body))
		if code != http.StatusUnprocessableEntity || !strings.Contains(text, c.key+": may not be changed through the admin API") {
			t.Errorf("%s moved: %d %q, want 422 naming it", c.key, code, text)
		}
	}
	mine := filepath.Join(t.TempDir(), "mine")
	if err := os.WriteFile(mine, []byte("attacker-chosen-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(s.config("debug"), strconv.Quote(filepath.Join(s.secrets, "admin.token")), strconv.Quote(mine), 1)
	if code, text := s.do(t, http.MethodPut, uploadToken, []byte(body)); code != http.StatusUnprocessableEntity || !strings.Contains(text, "admin.token_file") {
		t.Errorf("token moved: %d %q, want 422 naming admin.token_file", code, text)
	}
	if got := s.onDisk(t, s.file); got != old {
		t.Fatalf("a refused upload changed the file:\n%s", got)
	}
}
