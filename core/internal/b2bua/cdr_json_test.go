package b2bua

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/jsonenc"
	"github.com/umedge/umedge/core/sdk/router"
)

// selfAppending is media stats that append their own JSON, as the media
// engine's do: the record takes their bytes as they give them.
type selfAppending struct {
	Name string
	N    int
}

func (m selfAppending) AppendJSON(b []byte) ([]byte, error) {
	b = jsonenc.String(append(b, `{"Name":`...), m.Name)
	return append(jsonenc.Int(append(b, `,"N":`...), int64(m.N)), '}'), nil
}

// The record's own encoder writes exactly what json.Encoder writes for
// it: every string a peer controls (Call-ID, users, reasons) quoted and
// escaped alike — quotes, backslashes, control characters, HTML
// characters, U+2028/2029, invalid UTF-8 — times, durations, omitted
// fields and the media stats.
func TestRecordJSONIsEncodingJSON(t *testing.T) {
	start := time.Date(2026, 12, 2, 9, 0, 0, 123456789, time.UTC)
	nasty := []string{"", "plain", `quo"te`, `back\slash`, "ctl\x00\x01\x1f\x7f", "\b\f\n\r\t", "<script>&amp;",
		"line\u2028sep\u2029", "bad\xffutf8\xc3", "ünïcødé 📞", "\xe2\x80"}
	var recs []Record
	for i, s := range nasty {
		r := Record{CallID: s, Gateway: "gw" + s, DialPlan: s, Pool: s, Backend: s, From: s, To: s,
			Start: start, End: start.Add(time.Duration(i) * time.Second), Status: 200 + i, Reason: s, Redirects: i,
			LegA: LegInfo{Transport: router.UDP, Peer: "192.0.2.1:5060", CallID: s},
			LegB: LegInfo{Transport: router.Transport(s), Peer: s, CallID: s}}
		switch i % 3 {
		case 0:
			r.Answer = start.Add(time.Millisecond)
			r.Duration = r.End.Sub(r.Answer).Seconds()
		case 1:
			r.Media = map[string]any{"legs": []any{s, 1.5, nil}, "id": s}
			r.Start = time.Date(2026, 12, 2, 9, 0, 0, 0, time.FixedZone("x", 3600))
		case 2:
			r.Media = selfAppending{Name: s, N: i}
		}
		recs = append(recs, r)
	}
	for _, d := range []float64{1e-7, 1e21, 123456.789, 0.5, 1e-6} {
		recs = append(recs, Record{Start: start, End: start, Answer: start, Duration: d})
	}
	for _, r := range recs {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		got, err := r.appendJSON(nil)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("record %q:\ngot  %s\nwant %s", r.CallID, got, want.Bytes())
		}
	}
	// What encoding/json refuses, the writer refuses (and keeps queued).
	for _, r := range []Record{{Duration: math.NaN()}, {Start: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		if _, err := r.appendJSON(nil); err == nil {
			t.Errorf("%+v encoded; encoding/json refuses it", r)
		}
	}
}
