package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
)

// TestFirmwareUploadFollowsConfig: POST /firmware is off until
// admin.firmware_dir is set in the running config, and then spools into
// that directory; on a host that is no appliance (no appliance.slot on the
// kernel command line) the install stops there, and the spool is cleaned.
func TestFirmwareUploadFollowsConfig(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler)}
	cfg := config.Default()
	d.cfg.Store(&cfg)
	post := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		d.firmwareUpload(rec, httptest.NewRequest(http.MethodPost, "/firmware", strings.NewReader("bundle bytes")))
		return rec
	}
	if rec := post(); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "admin.firmware_dir") {
		t.Fatalf("upload with admin.firmware_dir unset = %d %q, want 404 naming the key", rec.Code, rec.Body)
	}

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil || strings.Contains(string(cmdline), "appliance.slot=") {
		t.Skip("this host looks like an appliance (or has no /proc/cmdline): the install would be real")
	}
	on := cfg
	on.Admin.FirmwareDir = filepath.Join(t.TempDir(), "firmware")
	d.cfg.Store(&on)
	rec := post()
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "appliance.slot") {
		t.Fatalf("upload on a host that is no appliance = %d %q, want 500 naming appliance.slot", rec.Code, rec.Body)
	}
	if left, _ := filepath.Glob(filepath.Join(on.Admin.FirmwareDir, "*")); len(left) != 0 {
		t.Fatalf("spool not cleaned: %v", left)
	}
}
