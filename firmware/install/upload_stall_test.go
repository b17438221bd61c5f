package install

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUploadStalledPeer: a client that sends part of a bundle and then
// stops sending, with the connection left open, must not hold the one
// upload slot for ever. While it stalls a second upload is refused as
// busy (409); once it has sent nothing for the idle timeout it is
// answered 408 naming the stall, the spool is empty, nothing reached a
// slot, and the next upload installs.
func TestUploadStalledPeer(t *testing.T) {
	defer func(d time.Duration) { uploadIdle = d }(uploadIdle)
	uploadIdle = 700 * time.Millisecond

	d := newDevice(t)
	spool := t.TempDir()
	srv := httptest.NewServer(Handler(spool, 10<<20, func() (Target, error) { return d.target(), nil }))
	defer srv.Close()
	good, _ := os.ReadFile(d.bundle(t, compat, 2, d.priv))
	before := d.snapshot(t)

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /firmware HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		srv.Listener.Addr(), len(good))
	if _, err := c.Write(good[:len(good)/3]); err != nil {
		t.Fatal(err)
	}
	// The stalled upload holds the slot: another one is busy.
	time.Sleep(200 * time.Millisecond)
	if code, text := post(t, srv.URL, good); code != http.StatusConflict {
		t.Fatalf("upload while another stalls = %d %q, want 409", code, text)
	}

	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, _ := io.ReadAll(c)
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 408")) || !bytes.Contains(answer, []byte("stalled")) {
		t.Fatalf("answer to a stalled upload: %q", answer)
	}
	if d.snapshot(t) != before {
		t.Fatal("a stalled upload changed the device")
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
		t.Fatalf("spool not cleaned after a stall: %v", left)
	}
	if code, text := post(t, srv.URL, good); code != http.StatusOK {
		t.Fatalf("upload after the stall = %d %q, want 200", code, text)
	}
	d.bootable(t)
}

func post(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/firmware", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestUploadRemovesStaleSpool: an upload spooled by an edged that died
// before it could remove it (a crash, a power cut) stays on the data
// partition; the next upload, which holds the one upload slot, removes
// it, so repeated crashes cannot fill the partition.
func TestUploadRemovesStaleSpool(t *testing.T) {
	d := newDevice(t)
	spool := t.TempDir()
	stale := filepath.Join(spool, "upload-123456.bundle")
	if err := os.WriteFile(stale, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(spool, "operator-notes.txt")
	if err := os.WriteFile(keep, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(spool, 10<<20, func() (Target, error) { return d.target(), nil }))
	defer srv.Close()
	if code, text := post(t, srv.URL, []byte("not a bundle")); code != http.StatusBadRequest {
		t.Fatalf("upload = %d %q, want 400", code, text)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale spool file still there (%v)", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a file that is no spool was removed: %v", err)
	}
}
