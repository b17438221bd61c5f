package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportExchangeCommand: the exit statuses and outputs of
// `edged import exchange`, in process.
func TestImportExchangeCommand(t *testing.T) {
	fixture := func(n string) string {
		return filepath.Join("..", "..", "internal", "exchimport", "testdata", n)
	}
	dir := t.TempDir()
	out, report := filepath.Join(dir, "umedge.toml"), filepath.Join(dir, "report.json")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a part of stdout ("" = must be empty)
		wantStderr string
	}{
		{"to stdout", []string{fixture("sample.clixml")}, 1, "[plugins.umrouter.settings.gateways.EXNET-GW1]", "import usable, with 2 warnings"},
		{"to a file with a report", []string{"-o", out, "--report", report, fixture("sample.clixml")}, 1, "", "cannot be migrated:"},
		{"naive CSV", []string{"-o", filepath.Join(dir, "naive.toml"), fixture("mailboxes-naive.csv")}, 2, "", "System.Collections.ArrayList"},
		{"Format-List", []string{fixture("gateways-format-list.txt")}, 2, "", "Export-Clixml -Path"},
		{"missing file", []string{filepath.Join(dir, "nope.clixml")}, 2, "", "no such file"},
		{"no file", nil, 2, "", "name at least one export file"},
		{"bad flag", []string{"-x", fixture("sample.clixml")}, 2, "", "flag provided but not defined: -x"},
		{"import without exchange", []string{}, 2, "", "usage: edged import exchange"},
		{"-h", []string{"-h"}, 0, "usage: edged import exchange [-o FILE]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"import", "exchange"}, tt.args...)
			if tt.name == "import without exchange" {
				args = []string{"import"}
			}
			code := run(args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d\nstderr: %s", code, tt.wantCode, stderr.String())
			}
			if tt.wantStdout == "" && stdout.Len() > 0 || !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantStdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr.String())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "naive.toml")); err == nil {
		t.Error("a refused import wrote its -o file")
	}
	text, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(text, []byte(`extension = "2001"`)) {
		t.Errorf("-o file: %v\n%s", err, text)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ExitStatus int `json:"exit_status"`
		Objects    []struct {
			Kind   string   `json:"kind"`
			Became []string `json:"became"`
		} `json:"objects"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.ExitStatus != 1 || len(r.Objects) != 14 {
		t.Errorf("report: %v, exit status %d, %d objects", err, r.ExitStatus, len(r.Objects))
	}
}
