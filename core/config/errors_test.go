package config

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestFieldErrorAndProblems(t *testing.T) {
	errA := errors.New("first thing")
	errB := errors.New("second thing")
	missing := &fs.PathError{Op: "stat", Path: "certs/server.pem", Err: fs.ErrNotExist}
	field := func(line int, path string, err error) *FieldError {
		return &FieldError{File: "edge.toml", Line: line, Path: path, Err: err}
	}

	tests := []struct {
		name      string
		give      error
		wantText  string   // give.Error()
		wantLines []string // Error() of each of Problems(give)
		wantPaths []string // Path of each problem that is a *FieldError
	}{
		{
			name:      "nil has no problems",
			give:      nil,
			wantLines: nil,
		},
		{
			name:      "a cause wrapped with two %w stays one problem with its key",
			give:      field(7, "sip.tls.cert", fmt.Errorf("%w: load certificate: %w", ErrInvalid, missing)),
			wantText:  "edge.toml:7: sip.tls.cert: invalid: load certificate: stat certs/server.pem: file does not exist",
			wantLines: []string{"edge.toml:7: sip.tls.cert: invalid: load certificate: stat certs/server.pem: file does not exist"},
			wantPaths: []string{"sip.tls.cert"},
		},
		{
			name:     "a join inside a field error keeps the file, line and key on every line",
			give:     field(12, "plugins.umrouter.sha256", errors.Join(errA, errB)),
			wantText: "edge.toml:12: plugins.umrouter.sha256: first thing\nedge.toml:12: plugins.umrouter.sha256: second thing",
			wantLines: []string{
				"edge.toml:12: plugins.umrouter.sha256: first thing",
				"edge.toml:12: plugins.umrouter.sha256: second thing",
			},
			wantPaths: []string{"plugins.umrouter.sha256", "plugins.umrouter.sha256"},
		},
		{
			name: "nested joins of field errors are flattened in order",
			give: errors.Join(
				field(3, "sip.tcp_port", ErrOutOfRange),
				errors.Join(field(8, "sip.tls.key", errors.Join(errA, errB)), field(9, "sip.tls.client_ca", ErrRequired)),
			),
			wantLines: []string{
				"edge.toml:3: sip.tcp_port: out of range",
				"edge.toml:8: sip.tls.key: first thing",
				"edge.toml:8: sip.tls.key: second thing",
				"edge.toml:9: sip.tls.client_ca: required",
			},
			wantPaths: []string{"sip.tcp_port", "sip.tls.key", "sip.tls.key", "sip.tls.client_ca"},
		},
		{
			name:      "a wrapper that adds no text stands for the field error",
			give:      fmt.Errorf("%w", field(5, "admin.listen", errors.Join(errA, errB))),
			wantLines: []string{"edge.toml:5: admin.listen: first thing", "edge.toml:5: admin.listen: second thing"},
			wantPaths: []string{"admin.listen", "admin.listen"},
		},
		{
			name:      "an error that is not a field error is one problem",
			give:      fmt.Errorf("read config: %w", missing),
			wantLines: []string{"read config: stat certs/server.pem: file does not exist"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantText != "" && tt.give.Error() != tt.wantText {
				t.Errorf("Error() =\n%s\nwant\n%s", tt.give.Error(), tt.wantText)
			}
			got := Problems(tt.give)
			var lines, paths []string
			for _, p := range got {
				lines = append(lines, p.Error())
				var fe *FieldError
				if errors.As(p, &fe) {
					paths = append(paths, fe.Path)
				}
			}
			if strings.Join(lines, "\n") != strings.Join(tt.wantLines, "\n") || len(lines) != len(tt.wantLines) {
				t.Errorf("Problems() =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(tt.wantLines, "\n"))
			}
			if strings.Join(paths, " ") != strings.Join(tt.wantPaths, " ") {
				t.Errorf("paths = %q, want %q", paths, tt.wantPaths)
			}
		})
	}
}

// TestProblemsKeepSentinels: the parts Problems returns still answer
// errors.Is for what they wrap, so callers can branch on them.
func TestProblemsKeepSentinels(t *testing.T) {
	missing := &fs.PathError{Op: "stat", Path: "ca.pem", Err: fs.ErrNotExist}
	give := &FieldError{Path: "sip.tls.client_ca", Err: errors.Join(
		fmt.Errorf("%w: load CA bundle: %w", ErrInvalid, missing),
		ErrConflict,
	)}
	got := Problems(give)
	if len(got) != 2 {
		t.Fatalf("Problems() = %q, want 2 problems", got)
	}
	if !errors.Is(got[0], ErrInvalid) || !errors.Is(got[0], fs.ErrNotExist) || errors.Is(got[0], ErrConflict) {
		t.Errorf("first problem %q lost or gained a sentinel", got[0])
	}
	if !errors.Is(got[1], ErrConflict) || errors.Is(got[1], ErrInvalid) {
		t.Errorf("second problem %q lost or gained a sentinel", got[1])
	}
}
