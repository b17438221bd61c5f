package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/umedge/umedge/"

// rules: a package under from may import, of this module's packages, only
// those under one of allow (nil = no restriction) and none under deny.
var rules = []struct {
	from  string
	allow []string
	deny  []string
}{
	{from: "plugins/", allow: []string{"core/sdk/"}},
	{from: "core/sdk/", deny: []string{"core/internal/", "core/config", "core/cmd/", "plugins/"}},
	{from: "core/config", deny: []string{"core/internal/", "core/cmd/", "plugins/"}},
	{from: "appliance/", deny: []string{"core/internal/"}},
	{from: "images/", deny: []string{"core/internal/"}},
	{from: "firmware/", deny: []string{"core/internal/"}},
	{from: "core/internal/", deny: []string{"plugins/", "core/cmd/"}},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestArchitecture(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "integration", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		from := strings.TrimPrefix(p.ImportPath, module)
		imports := append(append(p.Imports, p.TestImports...), p.XTestImports...)
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := strings.TrimPrefix(imp, module)
			if msg := check(from, to); msg != "" {
				t.Errorf("%s imports %s: %s (DESIGN.md §3)", from, to, msg)
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list saw %d packages, the test is not looking at the module", n)
	}
}

func check(from, to string) string {
	for _, r := range rules {
		if !strings.HasPrefix(from, r.from) {
			continue
		}
		if r.allow != nil && !hasPrefix(to, r.allow) && !strings.HasPrefix(to, from) {
			return "only " + strings.Join(r.allow, ", ") + " allowed"
		}
		if hasPrefix(to, r.deny) {
			return "forbidden"
		}
	}
	return ""
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func TestCheckCatchesViolations(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		wantBad  bool
	}{
		{"plugin uses sdk", "plugins/umrouter", "core/sdk/router", false},
		{"plugin uses core internals", "plugins/umrouter", "core/internal/routing", true},
		{"plugin uses config", "plugins/umrouter", "core/config", true},
		{"sdk uses internals", "core/sdk/router", "core/internal/sipfront", true},
		{"sdktest uses sdk", "core/sdk/sdktest", "core/sdk/router", false},
		{"firmware uses internals", "firmware/agent", "core/internal/admin", true},
		{"internal uses sdk", "core/internal/routing", "core/sdk/router", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := check(tt.from, tt.to) != ""; got != tt.wantBad {
				t.Errorf("check(%s, %s) bad = %v, want %v", tt.from, tt.to, got, tt.wantBad)
			}
		})
	}
}
