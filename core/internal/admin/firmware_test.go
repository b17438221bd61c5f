package admin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/firmware/bootslot"
	"github.com/umedge/umedge/firmware/bundle"
	"github.com/umedge/umedge/firmware/install"
)

const (
	fwCompat   = "umedge-amd64-v1"
	fwSlotSize = 1 << 20
	fwLimit    = 512 << 10
	fwToken    = "firmware-test-token-0123456789"
)

// fwDevice is an appliance as the upload sees it: an ESP directory with
// slot A blessed, and both root slots in one file.
type fwDevice struct {
	esp, spool string
	slots      *os.File
	pub        ed25519.PublicKey
	priv       ed25519.PrivateKey
	kernel     []byte // the new kernel and root every test bundle carries
	root       []byte
}

func newFWDevice(t *testing.T) *fwDevice {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &fwDevice{esp: t.TempDir(), spool: filepath.Join(t.TempDir(), "firmware"), pub: pub, priv: priv,
		kernel: randomBytes(t, 40_000), root: randomBytes(t, 200_000)}
	d.slots, err = os.Create(filepath.Join(t.TempDir(), "slots"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.slots.Close() })
	if err := d.slots.Truncate(2 * fwSlotSize); err != nil {
		t.Fatal(err)
	}
	esp := bootslot.DirESP(d.esp)
	for _, dir := range []string{"a", "b", bootslot.EntriesDir} {
		if err := esp.MkdirAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	entry := bootslot.Entry{Title: "umedge v1 (slot a)", Version: 1, Linux: "/a/vmlinuz",
		Options: "console=ttyS0 ro rootfstype=squashfs init=/init root=PARTLABEL=root-a appliance.slot=a"}
	for name, data := range map[string][]byte{
		"a/vmlinuz": randomBytes(t, 30_000),
		path.Join(bootslot.EntriesDir, "slot-a.conf"): entry.Marshal(),
		"loader/loader.conf":                          []byte(bootslot.LoaderConf),
	} {
		if err := bootslot.WriteFile(esp, name, data); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *fwDevice) target() (install.Target, error) {
	return install.Target{
		ESP: bootslot.DirESP(d.esp),
		OpenSlot: func(slot string) (install.Partition, error) {
			if slot == "a" {
				return install.FileWindow(d.slots, 0, fwSlotSize), nil
			}
			return install.FileWindow(d.slots, fwSlotSize, fwSlotSize), nil
		},
		Active:  "a",
		Trusted: []ed25519.PublicKey{d.pub},
		Compat:  fwCompat,
	}, nil
}

// bundle is a signed bundle of the device's new kernel and root.
func (d *fwDevice) bundle(t *testing.T, compatible string, version uint64, key ed25519.PrivateKey) []byte {
	t.Helper()
	dir := t.TempDir()
	k, r := filepath.Join(dir, "kernel"), filepath.Join(dir, "root")
	if err := os.WriteFile(k, d.kernel, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r, d.root, 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m := bundle.Manifest{Compatible: compatible, Version: version, Release: fmt.Sprintf("v%d", version)}
	if err := bundle.Create(&buf, m, []bundle.Source{{Name: bundle.PayloadKernel, Path: k}, {Name: bundle.PayloadRoot, Path: r}}, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// state hashes everything an install could change: the ESP's files and
// both slots, and lists what is left in the spool directory.
func (d *fwDevice) state(t *testing.T) string {
	t.Helper()
	h := sha256.New()
	err := filepath.Walk(d.esp, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", p, info.IsDir())
		if !info.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.slots.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(h, d.slots); err != nil {
		t.Fatal(err)
	}
	spooled, _ := filepath.Glob(filepath.Join(d.spool, "*"))
	return fmt.Sprintf("%x spool=%v", h.Sum(nil), spooled)
}

func startFirmwareAdmin(t *testing.T, d *fwDevice, token string) string {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Firmware: install.Handler(d.spool, fwLimit, d.target)}
	if token != "" {
		cfg.Token = func() ([]byte, error) { return []byte(token), nil }
	}
	s, _ := startAdmin(t, cfg)
	return "http://" + s.Addr() + FirmwarePath
}

type upload struct {
	body    io.Reader
	headers map[string]string
}

func postFirmware(t *testing.T, url string, u upload) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, u.body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range u.headers {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func authed(extra ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + fwToken, "Content-Type": "application/octet-stream"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// TestFirmwareUploadRefusals posts every kind of bad upload to a real
// admin server and checks that each is refused with its reason before a
// byte reaches a slot or the ESP, and that nothing is left in the spool.
func TestFirmwareUploadRefusals(t *testing.T) {
	d := newFWDevice(t)
	url := startFirmwareAdmin(t, d, fwToken)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	good := d.bundle(t, fwCompat, 2, d.priv)
	tampered := bytes.Clone(good)
	tampered[len(tampered)-2000] ^= 0x01 // inside the root payload
	unsigned := strings.Replace(string(good), `"version": 2`, `"version": 9`, 1)

	tests := []struct {
		name     string
		body     []byte
		chunked  bool // no Content-Length: the limit is found while reading
		headers  map[string]string
		wantCode int
		wantText string
	}{
		{name: "no token", body: good, headers: map[string]string{"Content-Type": "application/octet-stream"},
			wantCode: http.StatusUnauthorized, wantText: "bearer token"},
		{name: "wrong token", body: good, headers: map[string]string{"Authorization": "Bearer nope-nope-nope-nope-nope", "Content-Type": "application/octet-stream"},
			wantCode: http.StatusUnauthorized, wantText: "bearer token"},
		{name: "cross-site origin", body: good, headers: authed("Origin", "http://evil.example"),
			wantCode: http.StatusForbidden, wantText: "cross-site"},
		{name: "cross-site fetch", body: good, headers: authed("Sec-Fetch-Site", "cross-site"),
			wantCode: http.StatusForbidden, wantText: "cross-site"},
		{name: "form body", body: good, headers: authed("Content-Type", "text/plain"),
			wantCode: http.StatusUnsupportedMediaType, wantText: "application/octet-stream"},
		{name: "multipart form", body: good, headers: authed("Content-Type", "multipart/form-data; boundary=x"),
			wantCode: http.StatusUnsupportedMediaType},
		{name: "tampered payload", body: tampered, headers: authed(), wantCode: http.StatusBadRequest, wantText: "sha256"},
		{name: "manifest changed after signing", body: []byte(unsigned), headers: authed(), wantCode: http.StatusBadRequest, wantText: "signature"},
		{name: "truncated bundle", body: good[:len(good)/2], headers: authed(), wantCode: http.StatusBadRequest, wantText: "truncated"},
		{name: "wrong key", body: d.bundle(t, fwCompat, 2, otherKey), headers: authed(), wantCode: http.StatusBadRequest, wantText: "signature"},
		{name: "wrong hardware", body: d.bundle(t, "umedge-arm64-v1", 2, d.priv), headers: authed(), wantCode: http.StatusBadRequest, wantText: "umedge-arm64-v1"},
		{name: "older", body: d.bundle(t, fwCompat, 1, d.priv), headers: authed(), wantCode: http.StatusBadRequest, wantText: "not newer"},
		{name: "too big by Content-Length", body: make([]byte, fwLimit+1), headers: authed(), wantCode: http.StatusRequestEntityTooLarge},
		{name: "too big while streaming", body: make([]byte, 2*fwLimit), chunked: true, headers: authed(), wantCode: http.StatusRequestEntityTooLarge},
		{name: "not a bundle", body: []byte("hello"), headers: authed(), wantCode: http.StatusBadRequest},
	}
	before := d.state(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length from net/http
			}
			code, text := postFirmware(t, url, upload{body: body, headers: tt.headers})
			if code != tt.wantCode || !strings.Contains(text, tt.wantText) {
				t.Fatalf("POST %s = %d %q, want %d with %q", FirmwarePath, code, strings.TrimSpace(text), tt.wantCode, tt.wantText)
			}
			if after := d.state(t); after != before {
				t.Fatalf("a refused upload changed the device:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	t.Run("cut short", func(t *testing.T) {
		// The client promises the whole bundle and hangs up halfway.
		c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(url, FirmwarePath), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		host := c.RemoteAddr().String()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
			FirmwarePath, host, fwToken, len(good))
		_, _ = c.Write(good[:len(good)/3])
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, _ := io.ReadAll(c)
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 400")) || !bytes.Contains(resp, []byte("cut short")) {
			t.Fatalf("answer to a cut upload: %q", resp)
		}
		if after := d.state(t); after != before {
			t.Fatalf("a cut upload changed the device")
		}
	})
}

// TestFirmwareUploadNeedsToken: without admin.token_file the upload is
// refused, on a loopback-only listener too, where other mutating calls
// need no token.
func TestFirmwareUploadNeedsToken(t *testing.T) {
	d := newFWDevice(t)
	url := startFirmwareAdmin(t, d, "")
	before := d.state(t)
	code, text := postFirmware(t, url, upload{body: bytes.NewReader(d.bundle(t, fwCompat, 2, d.priv)),
		headers: map[string]string{"Content-Type": "application/octet-stream"}})
	if code != http.StatusForbidden || !strings.Contains(text, "admin.token_file") {
		t.Fatalf("upload without a configured token = %d %q, want 403 naming admin.token_file", code, text)
	}
	if d.state(t) != before {
		t.Fatal("a refused upload changed the device")
	}
}

// TestFirmwareUploadGood installs a good bundle over HTTP: slot B holds the
// new root, the ESP its kernel and a try-once entry; slot A is untouched.
func TestFirmwareUploadGood(t *testing.T) {
	d := newFWDevice(t)
	url := startFirmwareAdmin(t, d, fwToken)
	slotA := make([]byte, fwSlotSize)
	if _, err := d.slots.ReadAt(slotA, 0); err != nil {
		t.Fatal(err)
	}
	code, text := postFirmware(t, url, upload{body: bytes.NewReader(d.bundle(t, fwCompat, 2, d.priv)), headers: authed()})
	if code != http.StatusOK {
		t.Fatalf("good upload = %d %q", code, text)
	}
	var res struct {
		Slot, Entry string
		Version     uint64
	}
	if err := json.Unmarshal([]byte(text), &res); err != nil || res.Slot != "b" || res.Entry != "slot-b+1-0.conf" || res.Version != 2 {
		t.Fatalf("answer %q (%v), want slot b, entry slot-b+1-0.conf, version 2", text, err)
	}
	esp := bootslot.DirESP(d.esp)
	e, err := bootslot.Default(esp)
	if err != nil || e.File != "slot-b+1-0.conf" {
		t.Fatalf("default entry %+v (%v), want the new slot on trial", e, err)
	}
	kernel, err := bootslot.ReadFile(esp, bootslot.KernelPath("b"))
	if err != nil || !bytes.Equal(kernel, d.kernel) {
		t.Fatalf("slot b kernel does not match the bundle's (%v)", err)
	}
	root := make([]byte, len(d.root))
	if _, err := d.slots.ReadAt(root, fwSlotSize); err != nil || !bytes.Equal(root, d.root) {
		t.Fatalf("slot b root does not match the bundle's (%v)", err)
	}
	nowA := make([]byte, fwSlotSize)
	if _, err := d.slots.ReadAt(nowA, 0); err != nil || !bytes.Equal(nowA, slotA) {
		t.Fatal("the running slot A was written")
	}
	if spooled, _ := filepath.Glob(filepath.Join(d.spool, "*")); len(spooled) != 0 {
		t.Fatalf("spool not cleaned: %v", spooled)
	}
}
