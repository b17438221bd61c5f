// Package admin serves edged's operator HTTP API: health, status,
// Prometheus metrics, config reload, and the uploads of the config file
// and of firmware.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Backend is what the admin API reads and triggers.
type Backend interface {
	// Healthy reports whether edged can take calls; the error says why not.
	Healthy() error
	// Status returns a JSON-encodable snapshot of listeners, plugins,
	// gateways and back ends.
	Status() any
	// Reload re-reads the config file, as SIGHUP does.
	Reload(ctx context.Context) error
	// Calls returns a JSON-encodable list of the calls in progress
	// through the SBC: both legs, codecs, latched addresses, counters.
	Calls() any
}

// Config is what the server takes from [admin].
type Config struct {
	// Listen is host:port. Requests must name it, or a loopback name with
	// its port, in their Host header (see guard.go).
	Listen string
	// Token returns the bearer token that mutating calls (POST /reload)
	// must carry. It is asked on each such call, so a rewritten token file
	// takes effect at once. Nil, or an empty token, means none is set: a
	// loopback-only server then lets mutating calls through without one,
	// any other refuses them all. The uploads (Firmware, ConfigFile) and
	// GET /config are refused without one everywhere.
	Token func() ([]byte, error)
	// Firmware, when set, serves POST /firmware: the upload of a signed
	// update bundle (firmware/install.Handler). The guard lets it through
	// only with the bearer token, on loopback too, and only with the body
	// as application/octet-stream.
	Firmware http.Handler
	// ConfigFile, when set, serves GET and PUT /config: the download and
	// the upload of the config file (configHandler). The guard lets both
	// through only with the bearer token, on loopback too; the upload's
	// body is application/toml or application/octet-stream.
	ConfigFile ConfigFile
}

// idleTimeout closes a keep-alive connection that sends no next request.
// No ReadTimeout: the firmware upload's body may take minutes (it and the
// config upload have their own per-read deadline).
var idleTimeout = 2 * time.Minute

// FirmwarePath is the upload's path.
const FirmwarePath = "/firmware"

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// New listens on cfg.Listen and serves the API. The caller has checked that
// the address is on loopback unless remote admin was asked for.
func New(cfg Config, b Backend, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	g, err := newGuard(cfg, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Listen, err)
	}
	g.port = ln.Addr().(*net.TCPAddr).Port // the real one when Listen says port 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := b.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(b.Status())
	})
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(b.Calls())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Reload(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		_, _ = w.Write([]byte("reloaded\n"))
	})
	if cfg.Firmware != nil {
		mux.Handle("POST "+FirmwarePath, cfg.Firmware)
	}
	if cfg.ConfigFile != nil {
		h := &configHandler{file: cfg.ConfigFile}
		mux.HandleFunc("GET "+ConfigPath, h.get)
		mux.HandleFunc("PUT "+ConfigPath, h.put)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s := &Server{
		srv: &http.Server{Handler: g.wrap(mux), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: idleTimeout, MaxHeaderBytes: 64 << 10},
		ln:  ln,
		log: log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	}()
	log.Info("admin listening", "addr", ln.Addr().String(), "loopback_only", g.loopbackOnly)
	if !g.loopbackOnly && cfg.Token == nil {
		log.Warn("the admin listener is not loopback-only and has no token: POST /reload is refused")
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
