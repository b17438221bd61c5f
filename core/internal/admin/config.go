package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// ConfigPath is the path of the config file's download (GET) and upload
// (PUT).
const ConfigPath = "/config"

// ConfigMaxBytes bounds an uploaded config file: config.MaxFileBytes, the
// bound config.Load reads a file with (the admin package does not import
// the config package; a test keeps the two equal).
const ConfigMaxBytes = 32 << 20

// ConfigFile is the config file edged was started with (-config), as the
// admin API reads and replaces it.
type ConfigFile interface {
	// Read returns the file in force: what is on disk at the config path
	// now (after a reload that failed, not what runs).
	Read() ([]byte, error)
	// Replace checks data as `edged config check` does (plugin settings
	// included), writes it over the config path atomically (or over the
	// file edged was told to write instead: ConfigWritten.NotInForce),
	// keeping the previous file beside it, and then reloads as POST
	// /reload does when the file written is the one in force.
	// A file that does not pass the check is an error that wraps
	// ErrConfigInvalid, and nothing is written. An error writing leaves
	// the file in force as it was. When the file is written but the reload
	// fails, Replace returns the result with ReloadErr set and no error.
	Replace(ctx context.Context, data []byte) (ConfigWritten, error)
}

// ConfigWritten is what a Replace wrote.
type ConfigWritten struct {
	File      string // the file written (the config path, symlinks resolved)
	Prev      string // where the previous file was kept; "" when there was none
	ReloadErr error  // the reload's failure after the write; nil = reloaded
	// InPart, with ReloadErr, says that the reload applied the file in
	// part (a listener it could not move, say): neither the old config
	// nor the new one runs whole. Without it, the old config runs.
	InPart bool
	// NotInForce, when set, is the file in force, which File is not:
	// nothing was reloaded, whoever runs edged applies File (the
	// appliance's init does when it changes).
	NotInForce string
}

// ErrConfigInvalid marks an uploaded config that does not pass the check;
// the error's text is the problems, one a line.
var ErrConfigInvalid = errors.New("admin: the uploaded config does not pass the check, nothing was written")

// configIdle is how long a config upload may send nothing before it is
// given up (408), as the firmware upload's.
var configIdle = 30 * time.Second

var (
	errConfigTooLarge = errors.New("admin: config upload larger than a config file can be")
	errConfigBusy     = errors.New("admin: another config upload is in progress")
	errConfigStalled  = errors.New("admin: config upload stalled")
	errConfigCut      = errors.New("admin: config upload cut short")
	errConfigBadBody  = errors.New("admin: config upload body unreadable")
)

// configHandler serves GET and PUT /config (the guard has checked the
// token, which both always need: the file names the paths of secrets).
//
// PUT takes the whole TOML file as the body (application/toml or
// application/octet-stream), at most ConfigMaxBytes (413). One upload at a
// time: another while one runs gets 409. A body that sends nothing for
// 30 s is given up with 408, one cut short or framed wrong (a bad chunk)
// with 400. A file that fails the check is answered 422 with the problems
// as `edged config check` prints them (FILE:LINE: key: message, one a
// line), and nothing is written. A failed write (a full disk: 507) leaves
// the file in force as it was. When written, the reload follows, by the
// same code as POST /reload: 200 if it applied (200 "not reloaded" when
// the file written is not the one in force, ConfigWritten.NotInForce); if
// the reload fails after the write, 500 saying that the file is written
// (and where the previous one was kept) and why the reload failed, so the
// running config is then the old one until a reload or restart that
// succeeds; or, when the reload applied the file in part
// (ConfigWritten.InPart), the new one but for what failed.
type configHandler struct {
	file ConfigFile
	mu   sync.Mutex // held by the upload in progress
}

func (h *configHandler) get(w http.ResponseWriter, _ *http.Request) {
	data, err := h.file.Read()
	if err != nil {
		http.Error(w, "read config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/toml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
}

func (h *configHandler) put(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > ConfigMaxBytes {
		http.Error(w, fmt.Sprintf("%v (%d bytes, limit %d)", errConfigTooLarge, r.ContentLength, ConfigMaxBytes), http.StatusRequestEntityTooLarge)
		return
	}
	if !h.mu.TryLock() {
		http.Error(w, errConfigBusy.Error(), http.StatusConflict)
		return
	}
	defer h.mu.Unlock()
	data, err := readUpload(w, r, ConfigMaxBytes, configIdle)
	if err != nil {
		http.Error(w, err.Error(), uploadStatus(err))
		return
	}
	res, err := h.file.Replace(r.Context(), data)
	if err != nil {
		http.Error(w, err.Error(), uploadStatus(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	written := "config written to " + res.File
	if res.Prev != "" {
		written += " (the previous file kept as " + res.Prev + ")"
	}
	if res.ReloadErr != nil {
		runs := "the old config runs until a reload succeeds"
		if res.InPart {
			runs = "it applied in part: what failed runs as before until a reload succeeds"
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s, but the reload failed: %s\n%v\n", written, runs, res.ReloadErr)
		return
	}
	if res.NotInForce != "" {
		fmt.Fprintf(w, "%s\nnot the file in force (%s): not reloaded; it is in force once the appliance applies it\n", written, res.NotInForce)
		return
	}
	fmt.Fprintf(w, "%s\nreloaded\n", written)
}

// readUpload reads the whole body, at most limit bytes, with a read
// deadline idle ahead of each read: a peer that stops sending is given up
// after idle, however long the whole upload takes.
func readUpload(w http.ResponseWriter, r *http.Request, limit int64, idle time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, limit)
	var data []byte
	buf := make([]byte, 32<<10)
	for {
		_ = rc.SetReadDeadline(time.Now().Add(idle))
		n, err := body.Read(buf)
		data = append(data, buf[:n]...)
		if err == io.EOF {
			break
		}
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, fmt.Errorf("%w (limit %d bytes)", errConfigTooLarge, limit)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, fmt.Errorf("%w: nothing for %s after %d bytes", errConfigStalled, idle, len(data))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("%w after %d bytes", errConfigCut, len(data))
		case err != nil: // framing the client got wrong (a bad chunk), a reset
			return nil, fmt.Errorf("%w after %d bytes: %w", errConfigBadBody, len(data), err)
		}
	}
	// The whole body is in: the connection may serve another request.
	// After a failure the deadline stays, so the server's drain of what
	// is left of the body cannot wait on the peer.
	_ = rc.SetReadDeadline(time.Time{})
	return data, nil
}

func uploadStatus(err error) int {
	switch {
	case errors.Is(err, errConfigTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errConfigStalled):
		return http.StatusRequestTimeout
	case errors.Is(err, errConfigCut), errors.Is(err, errConfigBadBody):
		return http.StatusBadRequest
	case errors.Is(err, ErrConfigInvalid):
		return http.StatusUnprocessableEntity
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}
