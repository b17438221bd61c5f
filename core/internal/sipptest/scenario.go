package sipptest

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/template"
)

// The embedded scenarios. Each is a Go text/template rendered by Exec.
const (
	// UAC302 sends an INVITE, expects a 302 whose Contact matches
	// Run.ContactPattern (or one of Run.Codes), and ACKs it.
	UAC302 = "uac_302.xml"
	// UACCode sends an INVITE, expects one of Run.Codes (with a Retry-After
	// when Run.RetryAfter is set), and ACKs it.
	UACCode = "uac_code.xml"
	// UACRetrans sends an INVITE, expects a 302, sends the identical INVITE
	// again, expects the same 302, and ACKs it.
	UACRetrans = "uac_retrans.xml"
	// UACOptions sends an OPTIONS and expects a 200 with Allow, Accept and
	// Supported.
	UACOptions = "uac_options.xml"
	// UACMix places the calls of a mix (WriteMix): each call takes the next
	// line of Run.Inject, sends its INVITE (with its Diversion, if any),
	// expects the line's final status and, for a 302, its Contact, and
	// ACKs the answer. Over udp and tcp only: the expected Contact is the
	// back end's TCP port.
	UACMix = "uac_mix.xml"
	// UACCallMix places the calls of a mix as full calls through a proxy
	// or B2BUA: a line the Call Router would send to a mailbox must be
	// answered with 200 (the back end's), is ACKed, held for Run.Hold and
	// ended with a BYE; any other line must get its final status (404).
	UACCallMix = "uac_call_mix.xml"
)

// mixCodes are the final responses besides 302 that UACMix receives and
// checks against the line's expected status; any other fails the call as
// unexpected.
var mixCodes = []int{403, 404, 480, 488, 500, 503}

//go:embed scenarios/*.xml
var scenarioFS embed.FS

// scenarioData is what the scenario templates see.
type scenarioData struct {
	Remote         string // Run.Target, for the Request-URI and To
	Transport      string // UDP, TCP or TLS, for Via and Contact
	FromUser       string
	Headers        []string
	ContactPattern string
	OtherCodes     []int  // uac_302: accepted final codes besides 302
	OptionalCodes  []int  // uac_code: accepted codes but the last
	FinalCode      int    // uac_code: the last accepted code
	RetryAfter     bool   // uac_code: require a numeric Retry-After
	AckBranch      string // SIPp keyword that repeats the INVITE's branch in the ACK
	MixCodes       []int  // uac_mix, uac_call_mix: final codes besides 302 (200) that are checked against the line
	HoldMS         int64  // uac_call_mix: how long an answered call stays up, ms
}

// Scenarios lists the names of the embedded scenarios.
func Scenarios() []string {
	entries, err := scenarioFS.ReadDir("scenarios")
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Render returns the scenario XML that Exec would hand to SIPp for r. For
// a Scenario that is not embedded it returns the file's content unchanged.
func (r Run) Render() ([]byte, error) {
	src, err := scenarioFS.ReadFile("scenarios/" + r.Scenario)
	if err != nil {
		own, ferr := os.ReadFile(r.Scenario)
		if ferr != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrUnknownScenario, r.Scenario, ferr)
		}
		return own, nil
	}
	data, err := r.scenarioData()
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New(r.Scenario).
		Funcs(template.FuncMap{"attr": xmlAttr}).
		Option("missingkey=error").
		Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("parse scenario %s: %w", r.Scenario, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render scenario %s: %w", r.Scenario, err)
	}
	return buf.Bytes(), nil
}

func (r Run) scenarioData() (scenarioData, error) {
	d := scenarioData{
		Remote:         remote(r.Target),
		Transport:      strings.ToUpper(r.Transport),
		FromUser:       r.FromUser,
		Headers:        r.Headers,
		ContactPattern: r.ContactPattern,
		RetryAfter:     r.RetryAfter,
	}
	if d.Transport == "" {
		d.Transport = "UDP"
	}
	if d.FromUser == "" {
		d.FromUser = DefaultFromUser
	}
	if d.ContactPattern == "" {
		d.ContactPattern = "."
	}
	// SIPp hands ereg the header value with the blank after the colon.
	if rest, ok := strings.CutPrefix(d.ContactPattern, "^"); ok {
		d.ContactPattern = "^[ \t]*" + rest
	}
	for _, h := range d.Headers {
		if strings.ContainsAny(h, "\r\n") || !strings.Contains(h, ":") || strings.Contains(h, "]]>") {
			return d, fmt.Errorf("%w: header line %q", ErrInvalidRun, h)
		}
	}
	// Message indexes: 0 INVITE, 1 optional 100, then one recv per
	// alternative code, then the expected final response, then the ACK.
	switch r.Scenario {
	case UAC302:
		for _, c := range r.Codes {
			if c != 302 && !slices.Contains(d.OtherCodes, c) {
				d.OtherCodes = append(d.OtherCodes, c)
			}
		}
		d.AckBranch = branchOffset(3 + len(d.OtherCodes))
	case UACCode:
		var codes []int
		for _, c := range r.Codes {
			if !slices.Contains(codes, c) {
				codes = append(codes, c)
			}
		}
		if len(codes) == 0 {
			return d, fmt.Errorf("%w: %s needs Codes", ErrInvalidRun, UACCode)
		}
		d.OptionalCodes, d.FinalCode = codes[:len(codes)-1], codes[len(codes)-1]
		d.AckBranch = branchOffset(3 + len(d.OptionalCodes))
	case UACMix:
		d.MixCodes = mixCodes
	case UACCallMix:
		d.MixCodes = mixCodes
		d.HoldMS = r.Hold.Milliseconds()
	}
	for _, c := range append(d.OtherCodes, r.Codes...) {
		if c < 100 || c > 699 {
			return d, fmt.Errorf("%w: status code %d", ErrInvalidRun, c)
		}
	}
	return d, nil
}

// branchOffset is the SIPp keyword for the branch of message index 0 when
// used in the message at index i: SIPp builds [branch] from the message's
// own index plus the offset.
func branchOffset(i int) string {
	return fmt.Sprintf("[branch-%d]", i)
}

// xmlAttr quotes s for a SIPp XML attribute. SIPp's parser reads
// attribute values with C-style backslash escapes (\\, \", \n, \t, \r)
// and keeps any other backslash as is, so only backslash and quote need
// escaping; a regular expression like `127\.0\.0\.1` stays readable.
func xmlAttr(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `<`, `&lt;`, `>`, `&gt;`, `&`, `&amp;`).Replace(s)
}

// remote is how the scenario names the server in the Request-URI and To.
// SIPp reads "[...]" as a keyword, so an IPv6 target is written with SIPp's
// own keywords, which bracket IPv6 addresses.
func remote(target string) string {
	if strings.HasPrefix(target, "[") {
		return "[remote_ip]:[remote_port]"
	}
	return target
}
