package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeBackend struct {
	healthy   error
	reloadErr error
	reloads   int
}

func (f *fakeBackend) Healthy() error { return f.healthy }
func (f *fakeBackend) Status() any    { return map[string]string{"state": "fine"} }
func (f *fakeBackend) Reload(context.Context) error {
	f.reloads++
	return f.reloadErr
}

func TestAdmin(t *testing.T) {
	b := &fakeBackend{}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "umedge_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	s, err := New("127.0.0.1:0", b, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	base := "http://" + s.Addr()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	b.healthy = errors.New("no router plugin")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "no router plugin") {
		t.Errorf("/healthz unhealthy = %d %q", code, body)
	}
	if code, body := get("/status"); code != 200 || !strings.Contains(body, `"state": "fine"`) {
		t.Errorf("/status = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "umedge_test_total 1") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reload = %d, want 405", code)
	}
	b.reloadErr = errors.New("line 3: bad")
	resp, err := http.Post(base+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || b.reloads != 1 {
		t.Errorf("POST /reload = %d after %d reloads", resp.StatusCode, b.reloads)
	}
}
