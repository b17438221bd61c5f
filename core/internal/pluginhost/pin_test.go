package pluginhost

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseSums(t *testing.T) {
	a := strings.Repeat("ab", 32)
	b := strings.Repeat("CD", 32)
	tests := []struct {
		name    string
		give    string
		want    map[string]string // file name → lowercase hex
		wantErr string
	}{
		{
			name: "text and binary mode, paths, comments",
			give: "# pins\n\n" + a + "  umedge-plugin-a\n" + b + " *bin/plugins/umedge-plugin-b\n",
			want: map[string]string{"umedge-plugin-a": a, "umedge-plugin-b": strings.ToLower(b)},
		},
		{name: "empty", give: "", want: map[string]string{}},
		{name: "no file name", give: a + "\n", wantErr: "line 1"},
		{name: "short hash", give: "abcd  umedge-plugin-a\n", wantErr: "line 1"},
		{name: "not hex", give: "# x\n" + strings.Repeat("zz", 32) + "  umedge-plugin-a\n", wantErr: "line 2"},
		{name: "blank name", give: a + "  *\n", wantErr: "no file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSums(strings.NewReader(tt.give))

			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseSums() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSums() = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("parseSums() has %d entries, want %d", len(got), len(tt.want))
			}
			for name, sum := range tt.want {
				if hex.EncodeToString(got[name]) != sum {
					t.Errorf("sum of %s = %x, want %s", name, got[name], sum)
				}
			}
		})
	}
}

func TestBinaryPath(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr error
	}{
		{name: "plain name", give: "umedge-plugin-x", want: "/plugins/umedge-plugin-x"},
		{name: "empty", give: "", wantErr: errBadBinary},
		{name: "dot dot", give: "..", wantErr: errBadBinary},
		{name: "relative path", give: "../bin/x", wantErr: errBadBinary},
		{name: "absolute path", give: "/bin/sh", wantErr: errBadBinary},
		{name: "backslash", give: `a\b`, wantErr: errBadBinary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := binaryPath("/plugins", tt.give)

			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("binaryPath(%q) error = %v, want %v", tt.give, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("binaryPath(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}
