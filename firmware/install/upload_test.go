package install

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	d := newDevice(t)
	h := Handler(t.TempDir(), 10<<20, func() (Target, error) { return d.target(), nil })
	post := func(body []byte) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/firmware", bytes.NewReader(body)))
		return rec
	}

	older, _ := os.ReadFile(d.bundle(t, compat, 1, d.priv))
	rec := post(older)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "not newer") {
		t.Fatalf("older bundle: %d %s", rec.Code, rec.Body)
	}
	rec = post(bytes.Repeat([]byte{0}, 11<<20))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized upload: %d %s", rec.Code, rec.Body)
	}

	good, _ := os.ReadFile(d.bundle(t, compat, 2, d.priv))
	rec = post(good)
	if rec.Code != http.StatusOK {
		t.Fatalf("good bundle: %d %s", rec.Code, rec.Body)
	}
	var res struct {
		Slot    string
		Entry   string
		Version uint64
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.Slot != "b" || res.Entry != "slot-b+1-0.conf" || res.Version != 2 {
		t.Fatalf("answer %s (%v)", rec.Body, err)
	}
	d.bootable(t)
}
