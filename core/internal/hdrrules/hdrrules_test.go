package hdrrules

import (
	"errors"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, rules ...Rule) *Set {
	t.Helper()
	s, err := Compile(rules)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

func values(hs []Header, name string) []string {
	var out []string
	for _, h := range hs {
		if h.Name == name {
			out = append(out, h.Value)
		}
	}
	return out
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name      string
		give      Rule
		wantField string
		wantErr   error
	}{
		{"bad regexp", Rule{Direction: In, Header: "Diversion", Match: "(", Action: ActionRemove}, "match", ErrInvalid},
		{"unknown action", Rule{Direction: In, Header: "Diversion", Action: "rename"}, "action", ErrInvalid},
		{"unknown direction", Rule{Direction: "sideways", Header: "Diversion", Action: ActionRemove}, "direction", ErrInvalid},
		{"unknown part", Rule{Direction: In, Header: "Diversion", Part: "port", Match: "x", Action: ActionRemove}, "part", ErrInvalid},
		{"Via", Rule{Direction: Out, Header: "Via", Action: ActionRemove}, "header", ErrOwned},
		{"Call-ID compact", Rule{Direction: Out, Header: "i", Action: ActionSet, Value: "x"}, "header", ErrOwned},
		{"CSeq", Rule{Direction: Out, Header: "cseq", Match: "1", Action: ActionReplace, Value: "2"}, "header", ErrOwned},
		{"Content-Length", Rule{Direction: Out, Header: "Content-Length", Action: ActionSet, Value: "0"}, "header", ErrOwned},
		{"Max-Forwards", Rule{Direction: Out, Header: "Max-Forwards", Action: ActionSet, Value: "70"}, "header", ErrOwned},
		{"From tag", Rule{Direction: Out, Header: "From", Match: "tag=.*", Action: ActionReplace, Value: "tag=x"}, "header", ErrOwned},
		{"To removed", Rule{Direction: Out, Header: "To", Action: ActionRemove}, "header", ErrOwned},
		{"add onto Via", Rule{Direction: Out, Header: "Diversion", Action: ActionAdd, TargetHeader: "Via", Value: "SIP/2.0/UDP x"}, "target_header", ErrOwned},
		{"header with a colon", Rule{Direction: Out, Header: "X-A: b", Action: ActionRemove}, "header", ErrInvalid},
		{"value with CRLF", Rule{Direction: Out, Header: "X-A", Action: ActionAdd, Value: "a\r\nVia: evil"}, "value", ErrInvalid},
		{"replace without match", Rule{Direction: Out, Header: "X-A", Action: ActionReplace, Value: "b"}, "match", ErrInvalid},
		{"add without value", Rule{Direction: Out, Header: "X-A", Action: ActionAdd}, "value", ErrInvalid},
		{"huge pattern", Rule{Direction: Out, Header: "X-A", Match: strings.Repeat("a", MaxPattern+1), Action: ActionRemove}, "match", ErrBound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]Rule{tt.give})
			var re *RuleError
			if !errors.As(err, &re) || re.Field != tt.wantField || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Compile = %v, want a RuleError on %s wrapping %v", err, tt.wantField, tt.wantErr)
			}
		})
	}
	many := make([]Rule, MaxRules+1)
	for i := range many {
		many[i] = Rule{Direction: In, Header: "X-A", Action: ActionRemove}
	}
	if _, err := Compile(many); !errors.Is(err, ErrBound) {
		t.Errorf("%d rules: %v", len(many), err)
	}
}

func TestSpan(t *testing.T) {
	tests := []struct {
		give               string
		wantUser, wantHost string
	}{
		{`"Alice <x>" <sip:2001@10.1.1.1:5060;transport=tcp>;tag=1`, "2001", "10.1.1.1"},
		{`sip:2001@pbx.example.net;reason=no-answer`, "2001", "pbx.example.net"},
		{`<sips:bob@[2001:db8::1]:5061>`, "bob", "[2001:db8::1]"},
		{`<tel:+14255550123;phone-context=x>`, "+14255550123", ""},
		{`<sip:pbx.example.net>`, "", "pbx.example.net"},
		{`<sip:1234;phone-context=dp@host?Reason=x>`, "1234;phone-context=dp", "host"},
		{`<mailto:a@b>`, "", ""},
		{`garbage`, "", ""},
	}
	for _, tt := range tests {
		got := func(p Part) string {
			if lo, hi, ok := span(tt.give, p); ok {
				return tt.give[lo:hi]
			}
			return ""
		}
		if u, h := got(PartUser), got(PartHost); u != tt.wantUser || h != tt.wantHost {
			t.Errorf("span(%q) = user %q host %q, want %q %q", tt.give, u, h, tt.wantUser, tt.wantHost)
		}
	}
}

// Rules run in order, each on what the one before left; directions keep
// apart.
func TestOrderAndDirection(t *testing.T) {
	s := mustCompile(t,
		Rule{Direction: Out, Header: "X-Site", Action: ActionSet, Value: "a"},
		Rule{Direction: Out, Header: "X-Site", Match: "^a$", Action: ActionReplace, Value: "b"},
		Rule{Direction: In, Header: "X-Site", Action: ActionRemove},
	)
	out, res := s.Apply(Out, []Header{{"x-site", "old"}, {"Content-Length", "0"}})
	if got := values(out, "X-Site"); len(got) != 1 || got[0] != "b" || !res.Changed {
		t.Fatalf("out: %v %+v", out, res)
	}
	if out[len(out)-1].Name != "Content-Length" {
		t.Errorf("the set header went after Content-Length: %v", out)
	}
	if out, _ := s.Apply(In, []Header{{"X-Site", "old"}}); len(out) != 0 {
		t.Errorf("in: %v", out)
	}
}

// A capture group copies nothing into a header that would break it: CR,
// LF, NUL (which sipgo keeps inside a value) or characters a URI user may
// not hold are refused, the header left as it was.
func TestCraftedInputCannotInject(t *testing.T) {
	s := mustCompile(t,
		Rule{Direction: In, Header: "Diversion", Part: PartUser, Match: `(?s)^(.*)$`, Action: ActionReplace, Value: "9$1"},
		Rule{Direction: In, Header: "X-Note", Match: `(?s)^(.*)$`, Action: ActionReplace, Value: "note: $1"},
		Rule{Direction: In, Header: "X-Note", Match: `(?s)^(.*)$`, Action: ActionAdd, TargetHeader: "X-Copy", Value: "$1"},
	)
	for _, evil := range []string{"x\nVia: SIP/2.0/UDP evil", "x\r\nCall-ID: 1", "x\x00y", "a>b", "a b"} {
		in := []Header{{"Diversion", "<sip:" + evil + "@h>"}, {"X-Note", evil}}
		out, res := s.Apply(In, in)
		for _, h := range out {
			if h != in[0] && h != in[1] && !clean(h.Value) {
				t.Errorf("%q: the rules wrote a control character into %s: %q", evil, h.Name, h.Value)
			}
		}
		if d := values(out, "Diversion")[0]; d != in[0].Value {
			t.Errorf("%q: Diversion became %q", evil, d)
		}
		if strings.ContainsAny(evil, "\r\n\x00") && (res.Refused == 0 || len(values(out, "X-Copy")) != 0) {
			t.Errorf("%q: refused %d, copies %v", evil, res.Refused, values(out, "X-Copy"))
		}
	}
}

// Growth is bounded per message, added headers per rule set too.
func TestGrowthBounded(t *testing.T) {
	big := strings.Repeat("a", 2000)
	var rules []Rule
	for range 10 {
		rules = append(rules, Rule{Direction: Out, Header: "X-Big", Action: ActionAdd, Value: big})
	}
	rules = append(rules, Rule{Direction: Out, Header: "X-Big", Match: "(a+)", Action: ActionReplace, Value: "$1$1$1"})
	s := mustCompile(t, rules...)
	out, res := s.Apply(Out, nil)
	n := 0
	for _, h := range out {
		n += len(h.Name) + len(h.Value) + 4
	}
	if n > MaxGrowth || res.Refused == 0 {
		t.Errorf("grew by %d bytes (bound %d), refused %d", n, MaxGrowth, res.Refused)
	}
}

func TestApplyMessage(t *testing.T) {
	s := mustCompile(t, Rule{Direction: Out, Header: "Diversion", Part: PartUser, Match: `^\+1`, Action: ActionReplace, Value: ""},
		Rule{Direction: Out, Header: "Diversion", Part: PartUser, Match: `^\+`, Action: ActionReplace, Value: "00"})
	msg := "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nDiversion: <sip:+4930123@h>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
	out, res := s.ApplyMessage(Out, []byte(msg))
	want := strings.Replace(msg, "+4930123", "004930123", 1)
	if string(out) != want || !res.Changed {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	// The first rule would empty the user (R-CR-4): refused.
	_, res = s.ApplyMessage(Out, []byte(strings.Replace(msg, "+4930123", "+1", 1)))
	if res.Refused != 1 {
		t.Errorf("an empty user part: %+v", res)
	}
	if out, _ := s.ApplyMessage(In, []byte(msg)); string(out) != msg {
		t.Error("an outbound rule changed an inbound message")
	}
}

// FuzzApply: whatever a peer sends, the rules never panic and never make
// a header with a control character or an empty URI user, and the growth
// stays bounded.
func FuzzApply(f *testing.F) {
	s, err := Compile(append(allExamples(), Rule{Direction: Both, Header: "X-Any", Match: "(.*)", Action: ActionReplace, Value: "$1$1"},
		Rule{Direction: Both, Header: "X-Any", Match: "(.+)", Action: ActionAdd, TargetHeader: "X-Copy", Value: "<$1>"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Diversion", `<sip:+14255550100@pbx;user=phone>;reason=no-answer`)
	f.Add("History-Info", `<sip:2001@pbx?Reason=SIP%3Bcause%3D302>;index=1`)
	f.Add("From", `"A" <sip:alice@10.0.0.1>;tag=x`)
	f.Add("X-Any", "a\nb")
	f.Fuzz(func(t *testing.T, name, value string) {
		in := []Header{{name, value}, {"From", `<sip:1@h>;tag=t`}}
		out, _ := s.Apply(In, in)
		grown := 0
		for _, h := range out {
			grown += len(h.Name) + len(h.Value) + 4
		}
		for _, h := range in {
			grown -= len(Canonical(h.Name)) + len(h.Value) + 4
		}
		if grown > MaxGrowth {
			t.Fatalf("grew by %d", grown)
		}
		changed := map[string]bool{}
		for _, h := range out {
			changed[h.Name+"\x00"+h.Value] = true
		}
		for _, h := range in {
			delete(changed, Canonical(h.Name)+"\x00"+h.Value)
		}
		for k := range changed {
			name, v, _ := strings.Cut(k, "\x00")
			if !clean(v) {
				t.Fatalf("rules wrote %s: %q", name, v)
			}
			if lo, hi, ok := span(v, PartUser); ok && lo == hi {
				t.Fatalf("rules wrote an empty user into %s: %q", name, v)
			}
		}
	})
}

// BenchmarkApplyMessage: the example rules over an INVITE as the B2BUA
// writes it (each message to a peer with rules pays this once per send).
func BenchmarkApplyMessage(b *testing.B) {
	s, err := Compile(allExamples())
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("INVITE sip:1001@203.0.113.5:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bK1;rport\r\n" +
		"Max-Forwards: 69\r\nFrom: \"Alice\" <sip:+14255550123@sbc.example.net>;tag=abc\r\nTo: <sip:1001@203.0.113.5:5062>\r\n" +
		"Call-ID: umedge-1\r\nCSeq: 1 INVITE\r\nContact: <sip:198.51.100.1:5060;transport=tcp>\r\n" +
		"Diversion: <sip:1001@sbc.example.net>;reason=no-answer\r\nHistory-Info: <sip:1001@pbx>;index=1\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		s.ApplyMessage(Out, msg)
	}
}
