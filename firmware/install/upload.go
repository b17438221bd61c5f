package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/umedge/umedge/firmware/bundle"
)

// ESPDir is where the appliance's init mounts the EFI system partition.
const ESPDir = "/boot"

// OnDevice installs the bundle at bundlePath on the running appliance
// whose ESP is mounted at espDir. A reboot then tries the new slot once.
func OnDevice(bundlePath, espDir string) (Result, error) {
	t, err := Device(espDir)
	if err != nil {
		return Result{}, err
	}
	return Install(bundlePath, t)
}

// installing lets one upload at a time through: two installs into the
// same inactive slot would write over each other.
var installing sync.Mutex

// uploadIdle is how long an upload may send nothing before it is given
// up.
var uploadIdle = 30 * time.Second

// Handler takes a bundle as the body of a request (the admin API's
// upload; authentication is the admin server's), spools it to a file in
// spoolDir (on the data partition: the bundle is verified from the file
// before anything is written to a slot), installs it into target() and
// answers the Result as JSON. A body over limit bytes is refused with 413
// (at once when Content-Length says so), a bundle that does not verify or
// a body cut short with 400 and the reason, an upload while another runs
// or while the running slot is still on trial with 409. It does not
// reboot. Spooled files an earlier process left behind are removed. An upload that sends nothing for 30 s is given up with 408, so
// a stalled peer does not keep the upload slot.
func Handler(spoolDir string, limit int64, target func() (Target, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, fmt.Sprintf("%v (%d bytes, limit %d)", errTooLarge, r.ContentLength, limit), http.StatusRequestEntityTooLarge)
			return
		}
		if !installing.TryLock() {
			http.Error(w, errBusy.Error(), http.StatusConflict)
			return
		}
		defer installing.Unlock()
		res, err := upload(w, r, spoolDir, limit, target)
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

// spoolPattern names the files an upload is spooled to.
const spoolPattern = "upload-*.bundle"

var (
	errTooLarge = errors.New("install: bundle larger than the upload limit")
	errBusy     = errors.New("install: another firmware upload is being installed")
	errCut      = errors.New("install: upload cut short")
	errStalled  = errors.New("install: upload stalled")
)

// idleReader reads a request body with a read deadline idle ahead of
// each read: a peer that stops sending (and holds the one upload slot)
// is given up after idle, however long the whole upload takes. Where the
// connection has no deadlines (a test's recorder) it just reads.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(b []byte) (int, error) {
	_ = i.rc.SetReadDeadline(time.Now().Add(i.idle))
	return i.r.Read(b)
}

func upload(w http.ResponseWriter, r *http.Request, spoolDir string, limit int64, target func() (Target, error)) (Result, error) {
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return Result{}, fmt.Errorf("spool upload: %w", err)
	}
	// The lock is held: any other spooled upload was left by an edged
	// that died before it could remove it.
	if stale, err := filepath.Glob(filepath.Join(spoolDir, spoolPattern)); err == nil {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	f, err := os.CreateTemp(spoolDir, spoolPattern)
	if err != nil {
		return Result{}, fmt.Errorf("spool upload: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer f.Close()
	body := &idleReader{r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w), idle: uploadIdle}
	n, err := io.Copy(f, body)
	if err == nil {
		// The whole body is in: the connection may serve another
		// request. After a failure the deadline stays, so the server's
		// drain of what is left of the body cannot wait on the peer.
		_ = body.rc.SetReadDeadline(time.Time{})
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return Result{}, fmt.Errorf("%w (limit %d bytes)", errTooLarge, limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Result{}, fmt.Errorf("%w: nothing for %s after %d bytes", errStalled, uploadIdle, n)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Result{}, fmt.Errorf("%w after %d bytes", errCut, n)
	case err != nil:
		return Result{}, fmt.Errorf("receive upload: %w", err)
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
	case errors.Is(err, errStalled):
		return http.StatusRequestTimeout
	case errors.Is(err, ErrActiveOnTrial):
		return http.StatusConflict
	case errors.Is(err, errCut), errors.Is(err, bundle.ErrMalformed), errors.Is(err, bundle.ErrTruncated),
		errors.Is(err, bundle.ErrSignature), errors.Is(err, bundle.ErrIncompatible),
		errors.Is(err, bundle.ErrDowngrade), errors.Is(err, bundle.ErrPayload):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
