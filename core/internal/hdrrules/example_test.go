package hdrrules

import (
	"slices"
	"testing"
)

// The operator fixes um-spec R-SBC-9 names, as shipped in README.md
// ("Header manipulation rules") and configs/umedge.toml; one test each.
var examples = map[string][]Rule{
	// Diversion clean-up (Exchange event 1021): a Diversion whose user is
	// empty or no number goes, and ;user=phone is dropped from the rest.
	"diversion clean-up": {
		{Direction: In, Header: "Diversion", Part: PartUser, Match: `^$|[^0-9+]`, Action: ActionRemove},
		{Direction: In, Header: "Diversion", Match: `;user=phone`, Action: ActionReplace, Value: ""},
	},
	// Numeric user parts for a TelExtn dial plan: +1 and user parameters
	// go from the From user.
	"telextn numeric from": {
		{Direction: Out, Header: "From", Part: PartUser, Match: `^\+1(\d{10})$`, Action: ActionReplace, Value: "$1"},
		{Direction: Out, Header: "From", Part: PartUser, Match: `^(\d+);.*$`, Action: ActionReplace, Value: "$1"},
	},
	// History-Info → Diversion, for a UM back end that reads Diversion
	// only: the first numeric History-Info entry becomes the Diversion.
	"history-info to diversion": {
		{Direction: Out, Header: "History-Info", Part: PartUser, Match: `^(\+?\d+)$`, Action: ActionSet,
			TargetHeader: "Diversion", Value: "<sip:$1@umedge.example.net>;reason=unconditional"},
	},
	// Diversion → History-Info, for a peer that reads History-Info only.
	"diversion to history-info": {
		{Direction: Out, Header: "Diversion", Part: PartUser, Match: `^(\+?\d+)$`, Action: ActionSet,
			TargetHeader: "History-Info", Value: "<sip:$1@umedge.example.net>;index=1"},
	},
}

// allExamples are all the example rules, for the fuzz target.
func allExamples() []Rule {
	var out []Rule
	for _, name := range []string{"diversion clean-up", "telextn numeric from", "history-info to diversion", "diversion to history-info"} {
		out = append(out, examples[name]...)
	}
	return out
}

func TestExamples(t *testing.T) {
	tests := []struct {
		name string
		dir  Direction
		give []Header
		want []Header
	}{
		{"diversion clean-up", In,
			[]Header{{"Diversion", "<sip:+14255550100@pbx;user=phone>;reason=no-answer"}, {"Diversion", "<sip:voicemail@pbx>;reason=unconditional"}, {"Diversion", "<sip:@pbx>"}},
			[]Header{{"Diversion", "<sip:+14255550100@pbx>;reason=no-answer"}}},
		{"telextn numeric from", Out,
			[]Header{{"From", `"Alice" <sip:+14255550123@10.0.0.1>;tag=ours`}},
			[]Header{{"From", `"Alice" <sip:4255550123@10.0.0.1>;tag=ours`}}},
		{"telextn numeric from", Out,
			[]Header{{"From", `<sip:4123;phone-context=dp@pbx>;tag=ours`}},
			[]Header{{"From", `<sip:4123@pbx>;tag=ours`}}},
		{"history-info to diversion", Out,
			[]Header{{"History-Info", "<sip:4001@pbx?Reason=SIP%3Bcause%3D302>;index=1"}, {"History-Info", "<sip:um@pbx>;index=1.1"}, {"Diversion", "<sip:old@x>"}},
			[]Header{{"History-Info", "<sip:4001@pbx?Reason=SIP%3Bcause%3D302>;index=1"}, {"History-Info", "<sip:um@pbx>;index=1.1"},
				{"Diversion", "<sip:4001@umedge.example.net>;reason=unconditional"}}},
		{"diversion to history-info", Out,
			[]Header{{"Diversion", "<sip:4001@pbx>;reason=no-answer"}},
			[]Header{{"Diversion", "<sip:4001@pbx>;reason=no-answer"}, {"History-Info", "<sip:4001@umedge.example.net>;index=1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, examples[tt.name]...)
			got, _ := s.Apply(tt.dir, tt.give)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
