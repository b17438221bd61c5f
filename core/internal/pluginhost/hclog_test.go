package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// newTestHCLog returns an adapter over a JSON slog handler at level and a
// function that decodes the records written so far.
func newTestHCLog(t *testing.T, level slog.Level) (*hclogAdapter, func() []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	sl := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	records := func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("bad log line %q: %v", line, err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}
	return newHCLog(sl, "umrouter"), records
}

func TestHCLogLevels(t *testing.T) {
	tests := []struct {
		name      string
		give      func(l hclog.Logger)
		wantLevel string
	}{
		{name: "trace", give: func(l hclog.Logger) { l.Trace("m") }, wantLevel: "DEBUG-4"},
		{name: "debug", give: func(l hclog.Logger) { l.Debug("m") }, wantLevel: "DEBUG"},
		{name: "info", give: func(l hclog.Logger) { l.Info("m") }, wantLevel: "INFO"},
		{name: "warn", give: func(l hclog.Logger) { l.Warn("m") }, wantLevel: "WARN"},
		{name: "error", give: func(l hclog.Logger) { l.Error("m") }, wantLevel: "ERROR"},
		{name: "log at no level", give: func(l hclog.Logger) { l.Log(hclog.NoLevel, "m") }, wantLevel: "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, records := newTestHCLog(t, levelTrace)

			tt.give(l)

			recs := records()
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			if recs[0]["level"] != tt.wantLevel || recs[0]["msg"] != "m" || recs[0][pluginAttr] != "umrouter" {
				t.Errorf("record = %v, want level %s, msg m, plugin umrouter", recs[0], tt.wantLevel)
			}
		})
	}
}

func TestHCLogAttrs(t *testing.T) {
	l, records := newTestHCLog(t, slog.LevelDebug)

	l.Named("go-plugin").Named("stdio").With("a", 1).Info("hello",
		"plugin", "/bin/umedge-plugin-x", "err", errors.New("boom"), "fmt", hclog.Fmt("%d-%s", 7, "x"), 42, "odd")
	l.With("b", 2).ResetNamed("other").Warn("w", "dangling")

	recs := records()
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	want := map[string]any{
		"msg": "hello", pluginAttr: "umrouter", "logger": "go-plugin.stdio", "a": float64(1),
		binaryAttr: "/bin/umedge-plugin-x", "err": "boom", "fmt": "7-x", "42": "odd",
	}
	for k, v := range want {
		if recs[0][k] != v {
			t.Errorf("record[%q] = %v, want %v (record %v)", k, recs[0][k], v, recs[0])
		}
	}
	if recs[1]["logger"] != "other" || recs[1]["b"] != float64(2) || recs[1]["EXTRA_VALUE_AT_END"] != "dangling" {
		t.Errorf("second record = %v", recs[1])
	}
	if got := l.With("k", "v").ImpliedArgs(); len(got) != 2 || got[0] != "k" {
		t.Errorf("ImpliedArgs() = %v, want [k v]", got)
	}
	if got := l.Named("a").Named("b").Name(); got != "a.b" {
		t.Errorf("Name() = %q, want a.b", got)
	}
}

func TestHCLogLevelControl(t *testing.T) {
	l, records := newTestHCLog(t, slog.LevelInfo)

	if got := l.GetLevel(); got != hclog.Info {
		t.Errorf("GetLevel() = %v, want Info (from the handler)", got)
	}
	if l.IsDebug() || !l.IsInfo() {
		t.Errorf("IsDebug() = %v, IsInfo() = %v; want false, true", l.IsDebug(), l.IsInfo())
	}
	child := l.Named("child")
	l.SetLevel(hclog.Warn) // affects loggers derived before and after
	child.Info("dropped")
	l.With("x", 1).Info("dropped")
	child.Warn("kept")
	if got := child.GetLevel(); got != hclog.Warn {
		t.Errorf("child GetLevel() = %v, want Warn", got)
	}
	recs := records()
	if len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Errorf("records = %v, want only kept", recs)
	}
	l.SetLevel(hclog.Off)
	l.Error("dropped")
	if recs := records(); len(recs) != 0 {
		t.Errorf("records at Off = %v", recs)
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	tests := []struct {
		name      string
		giveOpts  *hclog.StandardLoggerOptions
		give      string
		wantLevel string
		wantMsg   string
	}{
		{name: "plain", give: "[ERROR] boom", wantLevel: "INFO", wantMsg: "[ERROR] boom"},
		{name: "infer", giveOpts: &hclog.StandardLoggerOptions{InferLevels: true}, give: "[ERROR] boom", wantLevel: "ERROR", wantMsg: "boom"},
		{name: "infer err", giveOpts: &hclog.StandardLoggerOptions{InferLevels: true}, give: "[ERR] boom", wantLevel: "ERROR", wantMsg: "boom"},
		{name: "infer with timestamp", giveOpts: &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			give: "2026/01/01 10:00:00 [WARN] careful", wantLevel: "WARN", wantMsg: "careful"},
		{name: "force", giveOpts: &hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}, give: "[ERROR] boom", wantLevel: "DEBUG", wantMsg: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, records := newTestHCLog(t, slog.LevelDebug)

			l.StandardLogger(tt.giveOpts).Println(tt.give)

			recs := records()
			if len(recs) != 1 || recs[0]["level"] != tt.wantLevel || recs[0]["msg"] != tt.wantMsg {
				t.Errorf("records = %v, want one %s %q", recs, tt.wantLevel, tt.wantMsg)
			}
		})
	}
}
