package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/umedge/umedge/firmware/bundle"
)

// OnDevice installs the bundle at bundlePath on the running appliance
// whose ESP is mounted at espDir. A reboot then tries the new slot once.
func OnDevice(bundlePath, espDir string) (Result, error) {
	t, err := Device(espDir)
	if err != nil {
		return Result{}, err
	}
	return Install(bundlePath, t)
}

// Handler takes a bundle as the body of a request (the admin API's
// upload; authentication is the admin server's), spools it to a file in
// spoolDir (on the data partition: the bundle is verified from the file
// before anything is written to a slot), installs it into target() and
// answers the Result as JSON. Bundles are refused with 400 and the reason,
// bodies over limit bytes with 413. It does not reboot.
func Handler(spoolDir string, limit int64, target func() (Target, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := upload(r, spoolDir, limit, target)
		if err != nil {
			http.Error(w, err.Error(), uploadStatus(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"slot": res.Slot, "entry": res.Entry, "version": res.Manifest.Version,
			"release": res.Manifest.Release, "next": "reboot to try the new slot once",
		})
	})
}

var errTooLarge = errors.New("install: bundle larger than the upload limit")

func upload(r *http.Request, spoolDir string, limit int64, target func() (Target, error)) (Result, error) {
	f, err := os.CreateTemp(spoolDir, "upload-*.bundle")
	if err != nil {
		return Result{}, fmt.Errorf("spool upload: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r.Body, limit+1))
	if err != nil {
		return Result{}, fmt.Errorf("receive upload: %w", err)
	}
	if n > limit {
		return Result{}, fmt.Errorf("%w (%d bytes)", errTooLarge, limit)
	}
	if err := f.Sync(); err != nil {
		return Result{}, fmt.Errorf("spool upload: %w", err)
	}
	t, err := target()
	if err != nil {
		return Result{}, err
	}
	return Install(f.Name(), t)
}

func uploadStatus(err error) int {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, bundle.ErrMalformed), errors.Is(err, bundle.ErrTruncated),
		errors.Is(err, bundle.ErrSignature), errors.Is(err, bundle.ErrIncompatible),
		errors.Is(err, bundle.ErrDowngrade), errors.Is(err, bundle.ErrPayload):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
