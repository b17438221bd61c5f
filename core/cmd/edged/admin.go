package main

import (
	"net/http"

	"github.com/umedge/umedge/core/internal/admin"
	"github.com/umedge/umedge/firmware/install"
)

// adminConfig is the admin server's config for listen. The bearer token is
// read from the running config's admin.token_file on each mutating call,
// so a reload that names another file, or a rewritten file, takes effect
// without moving the listener.
func (d *daemon) adminConfig(listen string) admin.Config {
	return admin.Config{
		Listen:     listen,
		Token:      func() ([]byte, error) { return d.cfg.Load().Admin.Token() },
		Firmware:   http.HandlerFunc(d.firmwareUpload),
		ConfigFile: configFile{d},
	}
}

// firmwareUpload serves POST /firmware on the appliance: the bundle is
// spooled into admin.firmware_dir, verified against the running root's
// trusted keys and compatible string, and installed into the inactive
// slot on the ESP the init mounted (install.ESPDir). The running config
// decides, so a reload turns the upload on or off.
func (d *daemon) firmwareUpload(w http.ResponseWriter, r *http.Request) {
	a := d.cfg.Load().Admin
	if a.FirmwareDir == "" {
		http.Error(w, "firmware upload is off: admin.firmware_dir is not set", http.StatusNotFound)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	install.Handler(a.FirmwareDir, int64(a.FirmwareMaxBytes), func() (install.Target, error) {
		return install.Device(install.ESPDir)
	}).ServeHTTP(rec, r)
	if rec.status == http.StatusOK {
		d.log.Warn("firmware bundle installed into the inactive slot; reboot to try it once", "remote", r.RemoteAddr)
	} else {
		d.log.Warn("firmware upload refused", "remote", r.RemoteAddr, "status", rec.status)
	}
}

// statusRecorder keeps the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
