package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/hdrrules"
)

// The header rules README.md ships for the Exchange field fixes load,
// validate, compile, and do what the README says they do.
func TestREADMEHeaderRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, part := range strings.Split(string(b), "```toml\n")[1:] {
		if body, _, _ := strings.Cut(part, "```"); strings.Contains(body, "header_rules") {
			block = body
		}
	}
	if block == "" {
		t.Fatal("README.md has no toml block with header_rules")
	}
	cfg, err := config.Parse("README.md", []byte("[sip]\nmode = \"tcp\"\n"+block))
	if err != nil {
		t.Fatalf("the README's rules do not load: %v", err)
	}
	peers, err := peerOptions(cfg.SBC.Peers)
	if err != nil {
		t.Fatal(err)
	}
	pbx, um := peers["pbx"].Rules, peers["um"].Rules
	tests := []struct {
		name string
		rs   *hdrrules.Set
		dir  hdrrules.Direction
		give []hdrrules.Header
		want []hdrrules.Header
	}{
		{"Diversion clean-up", pbx, hdrrules.In,
			[]hdrrules.Header{{Name: "Diversion", Value: "<sip:+14255550100@pbx;user=phone>;reason=no-answer"},
				{Name: "Diversion", Value: "<sip:voicemail@pbx>"}, {Name: "Diversion", Value: "<sip:@pbx>"}},
			[]hdrrules.Header{{Name: "Diversion", Value: "<sip:+14255550100@pbx>;reason=no-answer"}}},
		{"numeric From for TelExtn", um, hdrrules.Out,
			[]hdrrules.Header{{Name: "From", Value: `"A" <sip:+14255550123@sbc>;tag=t`}},
			[]hdrrules.Header{{Name: "From", Value: `"A" <sip:4255550123@sbc>;tag=t`}}},
		{"History-Info to Diversion", um, hdrrules.Out,
			[]hdrrules.Header{{Name: "History-Info", Value: "<sip:4001@pbx>;index=1"}},
			[]hdrrules.Header{{Name: "History-Info", Value: "<sip:4001@pbx>;index=1"},
				{Name: "Diversion", Value: "<sip:4001@umedge.example.net>;reason=unconditional"}}},
		{"Diversion to History-Info", pbx, hdrrules.Out,
			[]hdrrules.Header{{Name: "Diversion", Value: "<sip:4001@sbc>;reason=no-answer"}},
			[]hdrrules.Header{{Name: "Diversion", Value: "<sip:4001@sbc>;reason=no-answer"},
				{Name: "History-Info", Value: "<sip:4001@umedge.example.net>;index=1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := tt.rs.Apply(tt.dir, tt.give); !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
