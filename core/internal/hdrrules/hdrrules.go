// Package hdrrules applies an SBC peer's header manipulation rules
// (R-SBC-10) to the SIP headers of the messages sent to or received from
// that peer.
//
// A rule names a header, optionally a part of it (the whole value, or the
// user or host of the URI it carries) and a Go regular expression (RE2:
// linear in the input, whatever the pattern) on that part; it then adds,
// removes, replaces (with $1-style capture groups) or sets. Rules run in
// their configured order, each on the result of the ones before.
//
// What a rule makes must stay valid SIP and bounded: a header the B2BUA
// owns (Via, Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards,
// Content-Type, Content-Length) is refused at Compile; From and To may only
// have their URI's user or host replaced, so their tags stay ours; a result
// that would carry a control character (a CR or LF that a capture group
// copied out of crafted input), an empty or ill-formed URI part, a value
// longer than MaxValue or a message grown by more than MaxGrowth is not
// applied and is counted in Result.Refused.
package hdrrules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Direction says which messages of a peer a rule applies to.
type Direction string

// The directions.
const (
	In   Direction = "in"   // received from the peer
	Out  Direction = "out"  // sent to the peer
	Both Direction = "both" // either
)

// Action is what a rule does to the header it matched.
type Action string

// The actions.
const (
	// ActionAdd appends a header (TargetHeader, else Header) with Value: always
	// when Match is empty, else once when some instance of Header
	// matches, with that first match's capture groups expanded.
	ActionAdd Action = "add"
	// ActionRemove deletes every instance of Header that matches (all of them
	// when Match is empty).
	ActionRemove Action = "remove"
	// ActionReplace substitutes Value, capture groups expanded, for every match
	// of Match in the part of every instance of Header.
	ActionReplace Action = "replace"
	// ActionSet leaves exactly one instance of TargetHeader (else Header) with
	// Value: always when Match is empty, else when some instance of
	// Header matches, with that first match's capture groups expanded.
	ActionSet Action = "set"
)

// Part is what of a header's value a rule matches and replaces.
type Part string

// The parts.
const (
	PartValue Part = "value" // the whole value (the default)
	PartUser  Part = "user"  // the user of its sip:, sips: or tel: URI
	PartHost  Part = "host"  // the host of its sip: or sips: URI
)

// Bounds.
const (
	MaxRules   = 64   // rules per peer
	MaxPattern = 1024 // bytes of one Match
	MaxValue   = 2048 // bytes of a header value a rule wrote
	MaxGrowth  = 4096 // bytes the rules may add to one message
	maxAdds    = 16   // headers one rule set may add to one message
)

// Rule is one rule as configured.
type Rule struct {
	Direction    Direction
	Header       string // the header matched; compact forms allowed
	Part         Part   // "" = Value
	Match        string // Go regexp on Part; "" = every instance
	Action       Action
	Value        string // what Add, Replace and Set write; $1, ${name} expand
	TargetHeader string // the header Add and Set write; "" = Header
}

// Header is one header line: its name and value.
type Header struct{ Name, Value string }

// Result says what Apply did.
type Result struct {
	Changed bool
	Refused int // results not applied: unsafe or over a bound
}

// Set is a compiled, ordered list of rules; the zero value and nil apply
// nothing. It is safe for concurrent use.
type Set struct {
	rules []*rule
	names []string // canonical names of every header the rules read or write
}

type rule struct {
	Rule
	dir    Direction
	header string // canonical
	target string // canonical
	part   Part
	re     *regexp.Regexp
}

// Compile checks rules and compiles them. Its error joins a *RuleError per
// problem.
func Compile(rules []Rule) (*Set, error) {
	var errs []error
	if len(rules) > MaxRules {
		errs = append(errs, &RuleError{Index: MaxRules, Field: "", Err: fmt.Errorf("%w: %d rules, at most %d", ErrBound, len(rules), MaxRules)})
		rules = rules[:MaxRules]
	}
	s := &Set{}
	for i, r := range rules {
		cr, err := compile(i, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.rules = append(s.rules, cr)
		for _, n := range []string{cr.header, cr.target} {
			if !containsFold(s.names, n) {
				s.names = append(s.names, n)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func compile(i int, r Rule) (*rule, error) {
	var errs []error
	bad := func(field string, err error) { errs = append(errs, &RuleError{Index: i, Field: field, Err: err}) }
	cr := &rule{Rule: r, dir: r.Direction, part: r.Part, header: Canonical(r.Header)}
	if cr.part == "" {
		cr.part = PartValue
	}
	switch r.Direction {
	case In, Out, Both:
	default:
		bad("direction", fmt.Errorf("%w: %q is not one of in, out, both", ErrInvalid, r.Direction))
	}
	switch r.Action {
	case ActionAdd, ActionRemove, ActionReplace, ActionSet:
	default:
		bad("action", fmt.Errorf("%w: %q is not one of add, remove, replace, set", ErrInvalid, r.Action))
	}
	switch cr.part {
	case PartValue, PartUser, PartHost:
	default:
		bad("part", fmt.Errorf("%w: %q is not one of value, user, host", ErrInvalid, r.Part))
	}
	if !isToken(r.Header) {
		bad("header", fmt.Errorf("%w: %q is no header name", ErrInvalid, r.Header))
	} else if why := owned(cr.header, r.Action, cr.part); why != "" {
		bad("header", fmt.Errorf("%w: %s %s", ErrOwned, cr.header, why))
	}
	cr.target = cr.header
	if r.TargetHeader != "" {
		switch {
		case r.Action != ActionAdd && r.Action != ActionSet:
			bad("target_header", fmt.Errorf("%w: only add and set write another header", ErrInvalid))
		case !isToken(r.TargetHeader):
			bad("target_header", fmt.Errorf("%w: %q is no header name", ErrInvalid, r.TargetHeader))
		default:
			cr.target = Canonical(r.TargetHeader)
			if why := owned(cr.target, r.Action, PartValue); why != "" {
				bad("target_header", fmt.Errorf("%w: %s %s", ErrOwned, cr.target, why))
			}
		}
	}
	if (r.Action == ActionAdd || r.Action == ActionSet) && cr.part != PartValue && r.TargetHeader == "" {
		bad("part", fmt.Errorf("%w: add and set write whole values; part %q is for matching another header (target_header)", ErrInvalid, cr.part))
	}
	switch {
	case len(r.Match) > MaxPattern:
		bad("match", fmt.Errorf("%w: %d bytes, at most %d", ErrBound, len(r.Match), MaxPattern))
	case r.Match != "":
		re, err := regexp.Compile(r.Match)
		if err != nil {
			bad("match", fmt.Errorf("%w: %w", ErrInvalid, err))
		}
		cr.re = re
	case r.Action == ActionReplace:
		bad("match", fmt.Errorf("%w: replace needs a match", ErrInvalid))
	}
	if r.Action != ActionRemove && !clean(r.Value) {
		bad("value", fmt.Errorf("%w: control characters", ErrInvalid))
	}
	if r.Action == ActionRemove && r.Value != "" {
		bad("value", fmt.Errorf("%w: remove writes nothing", ErrInvalid))
	}
	if (r.Action == ActionAdd || r.Action == ActionSet) && strings.TrimSpace(r.Value) == "" {
		bad("value", fmt.Errorf("%w: %s needs a value", ErrInvalid, r.Action))
	}
	if len(r.Value) > MaxValue {
		bad("value", fmt.Errorf("%w: %d bytes, at most %d", ErrBound, len(r.Value), MaxValue))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cr, nil
}

// ownedHeaders are the headers the B2BUA writes itself: a rule on them
// would break the dialog, the transaction or the framing.
var ownedHeaders = []string{"Via", "Call-ID", "CSeq", "Contact", "Route", "Record-Route", "Max-Forwards", "Content-Type", "Content-Length"}

// owned says why a rule may not act on header, or "".
func owned(header string, a Action, p Part) string {
	if containsFold(ownedHeaders, header) {
		return "is written by the B2BUA itself"
	}
	if (strings.EqualFold(header, "From") || strings.EqualFold(header, "To")) && (a != ActionReplace || p == PartValue) {
		return "carries the B2BUA's tag: only replace on its user or host"
	}
	return ""
}

// Has reports whether s has rules for messages of direction d (In or Out).
func (s *Set) Has(d Direction) bool {
	if s == nil {
		return false
	}
	for _, r := range s.rules {
		if r.dir == d || r.dir == Both {
			return true
		}
	}
	return false
}

// Names are the canonical names of the headers s reads or writes.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return s.names
}

// Apply runs the rules of direction d (In or Out) over hs in order and
// returns the headers that result; hs is not modified.
func (s *Set) Apply(d Direction, hs []Header) ([]Header, Result) {
	var res Result
	if !s.Has(d) {
		return hs, res
	}
	out := make([]Header, len(hs))
	for i, h := range hs {
		out[i] = Header{Canonical(h.Name), h.Value}
	}
	st := &state{}
	for _, r := range s.rules {
		if r.dir == d || r.dir == Both {
			out = r.apply(out, st, &res)
		}
	}
	return out, res
}

// state is what the bounds count over one message.
type state struct{ growth, adds int }

// take reserves n more bytes of growth (n may be negative); false when
// the message would grow beyond MaxGrowth.
func (st *state) take(n int) bool {
	if st.growth+n > MaxGrowth {
		return false
	}
	st.growth += n
	return true
}

func (r *rule) apply(hs []Header, st *state, res *Result) []Header {
	switch r.Action {
	case ActionRemove:
		kept := hs[:0:0]
		for _, h := range hs {
			if h.Name == r.header && r.matches(h.Value) {
				st.growth -= len(h.Name) + len(h.Value) + 4
				res.Changed = true
				continue
			}
			kept = append(kept, h)
		}
		return kept
	case ActionReplace:
		for i, h := range hs {
			if h.Name != r.header {
				continue
			}
			v, ok := r.replace(h.Value)
			if !ok || v == h.Value {
				if !ok {
					res.Refused++
				}
				continue
			}
			if len(v) > MaxValue || !st.take(len(v)-len(h.Value)) {
				res.Refused++
				continue
			}
			hs[i].Value, res.Changed = v, true
		}
		return hs
	}
	// Add and Set.
	v, ok := r.Value, r.re == nil
	if r.re != nil {
		for _, h := range hs {
			if h.Name != r.header {
				continue
			}
			if lo, hi, found := span(h.Value, r.part); found {
				if m := r.re.FindStringSubmatchIndex(h.Value[lo:hi]); m != nil {
					v = string(r.re.ExpandString(nil, r.Value, h.Value[lo:hi], m))
					ok = true
					break
				}
			}
		}
	}
	if !ok {
		return hs
	}
	if !clean(v) || strings.TrimSpace(v) == "" || len(v) > MaxValue {
		res.Refused++
		return hs
	}
	if r.Action == ActionSet {
		kept := hs[:0:0]
		for _, h := range hs {
			if h.Name == r.target {
				st.growth -= len(h.Name) + len(h.Value) + 4
				continue
			}
			kept = append(kept, h)
		}
		hs = kept
	}
	if st.adds >= maxAdds || !st.take(len(r.target)+len(v)+4) {
		res.Refused++
		return hs
	}
	st.adds++
	res.Changed = true
	return insert(hs, Header{r.target, v})
}

// insert puts h after the last header of its name, else before the body's
// Content-Type and Content-Length, else at the end.
func insert(hs []Header, h Header) []Header {
	at := len(hs)
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Name == h.Name {
			at = i + 1
			break
		}
		if hs[i].Name == "Content-Type" || hs[i].Name == "Content-Length" {
			at = i
		}
	}
	hs = append(hs, Header{})
	copy(hs[at+1:], hs[at:])
	hs[at] = h
	return hs
}

// matches reports whether the rule's part of v matches.
func (r *rule) matches(v string) bool {
	lo, hi, ok := span(v, r.part)
	return ok && (r.re == nil || r.re.MatchString(v[lo:hi]))
}

// replace returns v with the matches in its part replaced; ok is false
// when the result is not safe to send (it is then v).
func (r *rule) replace(v string) (string, bool) {
	lo, hi, found := span(v, r.part)
	if !found || !r.re.MatchString(v[lo:hi]) {
		return v, true
	}
	p := r.re.ReplaceAllString(v[lo:hi], r.Value)
	if !validPart(r.part, p) {
		return v, false
	}
	return v[:lo] + p + v[hi:], true
}

// validPart reports whether p may stand as a part: a value without
// control characters and not empty; a user or host of the characters RFC
// 3261 §25.1 allows there, not empty (R-CR-4: no empty user parts).
func validPart(part Part, p string) bool {
	if p == "" || !clean(p) {
		return false
	}
	switch part {
	case PartUser:
		return allOf(p, "-_.!~*'()%&=+$,;?/#")
	case PartHost:
		return allOf(p, "-.:[]")
	}
	return true
}

func allOf(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// clean reports whether v has no control characters but HTAB.
func clean(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 3261 token (a header name).
func isToken(s string) bool {
	return s != "" && len(s) <= 64 && allOf(s, "-.!%*_+`'~")
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
