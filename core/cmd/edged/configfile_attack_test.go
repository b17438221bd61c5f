package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestConfigUploadPrevPlanted: a .prev someone put there beforehand does
// not redirect the write: a symlink is replaced by the file (what it
// pointed at untouched), a directory fails the upload with the reason and
// leaves the file in force, the running config and no temporary file.
func TestConfigUploadPrevPlanted(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		s := newUploadSite(t, t.TempDir())
		old := s.onDisk(t, s.file)
		victim := filepath.Join(t.TempDir(), "victim")
		if err := os.WriteFile(victim, []byte("untouched"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, s.file+".prev"); err != nil {
			t.Fatal(err)
		}
		if code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug"))); code != http.StatusOK {
			t.Fatalf("upload = %d %q", code, text)
		}
		if got := s.onDisk(t, victim); got != "untouched" {
			t.Fatalf("the file a planted .prev link pointed at was written: %q", got)
		}
		fi, err := os.Lstat(s.file + ".prev")
		if err != nil || !fi.Mode().IsRegular() || s.onDisk(t, s.file+".prev") != old {
			t.Fatalf(".prev is %v %v, want a regular file with the old config", fi, err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		s := newUploadSite(t, t.TempDir())
		old := s.onDisk(t, s.file)
		if err := os.MkdirAll(filepath.Join(s.file+".prev", "inside"), 0o700); err != nil {
			t.Fatal(err)
		}
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
		if code != http.StatusInternalServerError || !strings.Contains(text, s.file+".prev") {
			t.Fatalf("upload with .prev a directory = %d %q, want 500 naming it", code, text)
		}
		if got := s.onDisk(t, s.file); got != old {
			t.Fatalf("the file in force changed:\n%s", got)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.file), ".*")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
		if got := s.d.cfg.Load().Log.Level; got != "info" {
			t.Fatalf("log level %q after a failed upload", got)
		}
	})
}

// TestConfigUploadStoreShapes: -config-store as a symlink is followed (the
// link stays), as a dangling link is refused naming it (nothing created
// where it points), as a file not there yet is created 0600 with no .prev,
// and in a directory that does not exist fails naming the file.
func TestConfigUploadStoreShapes(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		real := filepath.Join(t.TempDir(), "umedge.toml")
		if err := os.WriteFile(real, []byte("[log]\nlevel = 7\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(t.TempDir(), "store.toml")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		s := newUploadSiteStore(t, t.TempDir(), link)
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
		if code != http.StatusOK || !strings.Contains(text, "config written to "+real) || !strings.Contains(text, real+".prev") {
			t.Fatalf("upload to a linked store = %d %q, want it written to %s", code, text, real)
		}
		if got := s.onDisk(t, real); got != s.config("debug") {
			t.Fatalf("the store's file is %q", got)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the store link was replaced: %v %v", fi, err)
		}
	})
	t.Run("dangling link", func(t *testing.T) {
		dir := t.TempDir()
		link, nowhere := filepath.Join(dir, "store.toml"), filepath.Join(dir, "gone", "umedge.toml")
		if err := os.Symlink(nowhere, link); err != nil {
			t.Fatal(err)
		}
		s := newUploadSiteStore(t, t.TempDir(), link)
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
		if code != http.StatusInternalServerError || !strings.Contains(text, "config store "+link) {
			t.Fatalf("upload to a dangling store link = %d %q, want 500 naming the store", code, text)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the dangling link was replaced: %v %v", fi, err)
		}
	})
	t.Run("not there yet", func(t *testing.T) {
		store := filepath.Join(t.TempDir(), "umedge.toml")
		s := newUploadSiteStore(t, t.TempDir(), store)
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
		if code != http.StatusOK || !strings.Contains(text, "config written to "+store) || strings.Contains(text, "previous") {
			t.Fatalf("upload to a new store = %d %q", code, text)
		}
		if fi, err := os.Stat(store); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the new store file: %v %v, want 0600", fi, err)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		store := filepath.Join(t.TempDir(), "gone", "umedge.toml")
		s := newUploadSiteStore(t, t.TempDir(), store)
		code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
		if code != http.StatusInternalServerError || !strings.Contains(text, store) {
			t.Fatalf("upload into a missing directory = %d %q, want 500 naming the file", code, text)
		}
	})
}

// TestConfigUploadStoreNotAFile: a store that is no regular file (a FIFO
// someone made there) is refused at once, naming it: reading it would
// hang the upload, holding the one upload slot for good.
func TestConfigUploadStoreNotAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "umedge.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	t.Cleanup(func() { // frees a reader the old code left blocked
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	s := newUploadSiteStore(t, t.TempDir(), fifo)
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug")))
	if code != http.StatusInternalServerError || !strings.Contains(text, fifo) || !strings.Contains(text, "not a regular file") {
		t.Fatalf("upload to a FIFO store = %d %q, want 500 naming it, not a regular file", code, text)
	}
	// The slot is free again.
	if code, text := s.do(t, http.MethodPut, uploadToken, []byte(s.config("debug"))); code == http.StatusConflict {
		t.Fatalf("the next upload = %d %q: the slot is still held", code, text)
	}
}

// TestConfigUploadTokenFileElsewhere: a config whose admin.token_file
// names another file is checked like any: a file that holds no usable
// token is refused without its content in the answer, and GET never
// returns the token.
func TestConfigUploadTokenFileElsewhere(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	other := filepath.Join(t.TempDir(), "hep.secret")
	if err := os.WriteFile(other, []byte("pass word-of-the-hep-collector\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(s.config("debug"), filepath.Join(s.secrets, "admin.token"), other, 1)
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(next))
	if code != http.StatusUnprocessableEntity || !strings.Contains(text, "admin.token_file") {
		t.Fatalf("upload naming a file with no usable token = %d %q, want 422 on admin.token_file", code, text)
	}
	if strings.Contains(text, "word-of-the-hep") {
		t.Fatalf("the answer shows the named file's content: %q", text)
	}
	if code, text := s.do(t, http.MethodGet, uploadToken, nil); code != http.StatusOK || strings.Contains(text, uploadToken) {
		t.Fatalf("GET /config = %d, and holds the token: %v", code, strings.Contains(text, uploadToken))
	}
}

// TestConfigUploadMovesAdminToBusyPort: an upload that passes the check
// but moves admin.listen to a port another process holds must not take
// the admin API down with it: the API it came through keeps answering,
// the answer says the file applied only in part (not that the old config
// runs), and the running config keeps the address it really listens on,
// so the next reload tries the move again.
func TestConfigUploadMovesAdminToBusyPort(t *testing.T) {
	s := newUploadSite(t, t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	oldListen, busyAddr := fmt.Sprintf("127.0.0.1:%d", s.port), busy.Addr().String()
	next := strings.Replace(s.config("debug"), oldListen, busyAddr, 1)
	code, text := s.do(t, http.MethodPut, uploadToken, []byte(next))
	if code != http.StatusInternalServerError || !strings.Contains(text, "in part") || strings.Contains(text, "old config runs") {
		t.Fatalf("upload moving admin to a busy port = %d %q, want 500 saying it applied in part", code, text)
	}
	if code, text := s.do(t, http.MethodGet, uploadToken, nil); code != http.StatusOK || text != next {
		t.Fatalf("GET /config after the failed move = %d %q: the admin API went down", code, text)
	}
	if got := s.d.cfg.Load(); got.Log.Level != "debug" || got.Admin.Listen != oldListen {
		t.Fatalf("running config: level %q, admin.listen %q; want debug (applied) and %s (where it listens)", got.Log.Level, got.Admin.Listen, oldListen)
	}
	// The port free again: a reload moves it.
	busy.Close()
	if err := s.d.Reload(t.Context()); err != nil {
		t.Fatalf("reload once the port is free: %v", err)
	}
	if got := s.d.admin.Addr(); got != busyAddr {
		t.Fatalf("admin listens on %s after the reload", got)
	}
}
