package exchimport

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/router"
)

// Found by review: the nesting bound was checked in value() only; nested() recurses into
// a child <Obj> directly (clixml.go:394-397), so Obj-in-Obj nesting is
// unbounded (Go stack, then a fatal "goroutine stack exceeds" crash).
func TestReviewNestedObjDepthBound(t *testing.T) {
	doc := objsOpen + `<Obj RefId="0"><TN RefId="0"><T>UMDialPlan</T></TN><Props><Obj N="AccessTelephoneNumbers">` +
		strings.Repeat("<Obj>", 10000) + strings.Repeat("</Obj>", 10000) + `</Obj></Props></Obj></Objs>`
	_, err := Read(strings.NewReader(doc), "deep", Options{}, func(*Object) error { return nil }, func(Warning) {})
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("10,000 nested <Obj> read with err = %v, want the nesting bound of %d", err, maxDepth)
	}
}

// Found by review: <Ref> to a list is expanded by copying (clixml.go:318-327, 415-416,
// 367-369): each level of refs multiplies the list, a billion-laughs in a
// few kilobytes.
func TestReviewRefExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString(objsOpen + `<Obj RefId="0"><TN RefId="0"><T>UMMailbox</T></TN><Props><S N="PrimarySmtpAddress">a@x</S>`)
	b.WriteString(`<Obj N="Junk0" RefId="r0"><LST>` + strings.Repeat(`<S>smtp:x</S>`, 100) + `</LST></Obj>`)
	b.WriteString(`<Obj N="Junk1" RefId="r1"><LST>` + strings.Repeat(`<Ref RefId="r0"/>`, 100) + `</LST></Obj>`)
	b.WriteString(`<Obj N="EmailAddresses" RefId="r2"><LST>` + strings.Repeat(`<Ref RefId="r1"/>`, 100) + `</LST></Obj>`)
	b.WriteString(`</Props></Obj></Objs>`)
	var items int
	_, err := Read(strings.NewReader(b.String()), "laughs", Options{},
		func(o *Object) error { items = len(o.Props["EmailAddresses"].List); return nil }, func(Warning) {})
	if err == nil && items > 100_000 {
		t.Fatalf("a %d-byte CLIXML expanded to a %d-item list; one more level of Refs is 100M items (out of memory)", b.Len(), items)
	}
}

// Found by review: two dial plans with one PhoneContext: contexts (mapping.go:458-463)
// is filled from a map, so which plan a further EUM extension lands in
// changes from run to run.
func TestReviewPhoneContextDeterminism(t *testing.T) {
	d := minimal()
	d["dp.csv"] = []byte("\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n" +
		"\"dp\",\"TelExtn\",\"4\",\"Unsecured\",\"dp.example.net\"\r\n" +
		"\"b1\",\"TelExtn\",\"4\",\"Unsecured\",\"shared.example.net\"\r\n" +
		"\"b2\",\"TelExtn\",\"4\",\"Unsecured\",\"shared.example.net\"\r\n")
	d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n" +
		"\"a@example.net\",\"True\",\"dp\",\"EUM:1001;phone-context=dp.example.net|eum:2001;phone-context=shared.example.net\"\r\n")
	first := importData(t, minimalNames, d).Config
	for i := 0; i < 50; i++ {
		if again := importData(t, minimalNames, d).Config; !bytes.Equal(again, first) {
			t.Fatalf("run %d gave another config for the same input:\n%s\n---\n%s", i, first, again)
		}
	}
}

// checkLikeConfigCheck decodes the imported config as edged does (BurntSushi
// TOML) and applies the checks plugins/umrouter/config.go applies to the
// values the importer writes. It returns the problems found.
func checkLikeConfigCheck(cfg []byte) []string {
	var doc struct {
		Plugins struct {
			Umrouter struct {
				Settings struct {
					DialPlans map[string]struct {
						URIType string `toml:"uri_type"`
						Digits  int    `toml:"extension_digits"`
					} `toml:"dial_plans"`
					Mailboxes map[string]struct {
						Extension string `toml:"extension"`
						DialPlan  string `toml:"dial_plan"`
						E164      string `toml:"e164"`
						SIPUser   string `toml:"sip_user"`
					} `toml:"mailboxes"`
					Pools map[string]struct {
						Backends []struct {
							Host string `toml:"host"`
						} `toml:"backends"`
					} `toml:"pools"`
				} `toml:"settings"`
			} `toml:"umrouter"`
		} `toml:"plugins"`
	}
	if _, err := toml.Decode(string(cfg), &doc); err != nil {
		return []string{"TOML: " + err.Error()}
	}
	var out []string
	s := doc.Plugins.Umrouter.Settings
	for name, mb := range s.Mailboxes {
		dp := s.DialPlans[mb.DialPlan]
		if _, err := (router.NumberFormat{URIType: router.TelExtn, Digits: dp.Digits}).Key(mb.Extension); err != nil {
			out = append(out, fmt.Sprintf("mailboxes.%s.extension: %v", name, err))
		}
		if mb.E164 != "" {
			if _, err := (router.NumberFormat{URIType: router.E164}).Key(mb.E164); err != nil {
				out = append(out, fmt.Sprintf("mailboxes.%s.e164: %v", name, err))
			}
		}
		if mb.SIPUser != "" && !router.ValidSIPUser(mb.SIPUser) {
			out = append(out, fmt.Sprintf("mailboxes.%s.sip_user: %q", name, mb.SIPUser))
		}
	}
	for name, p := range s.Pools {
		for i, b := range p.Backends {
			if !router.ValidHost(b.Host) {
				out = append(out, fmt.Sprintf("pools.%s.backends[%d].host: %q", name, i, b.Host))
			}
		}
	}
	return out
}

// Found by review: values were written without the checks umrouter applies: e164 from an
// EUM address or SIPResourceIdentifier only needs a leading "+"
// (mapping.go:555-558, 573-575), the E164 plan's extension is its last
// digits whatever they are (mapping.go:579-582), sip_user is any user
// part (mapping.go:551-554, 570-572), a backend host any service name
// (config.go:297-298). Exit status 0/1, config check refuses.
func TestReviewUncheckedValues(t *testing.T) {
	tests := []struct {
		name string
		edit func(map[string][]byte)
	}{
		{"e164 from EUM", func(d map[string][]byte) {
			d["dp.csv"] = []byte("\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n\"dp\",\"E164\",\"4\",\"Unsecured\",\"dp.example.net\"\r\n")
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"+15550005000"`), 1)
			d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n\"a@example.net\",\"True\",\"dp\",\"EUM:+1abc;phone-context=dp.example.net\"\r\n")
		}},
		{"e164 from SIPResourceIdentifier", func(d map[string][]byte) {
			d["dp.csv"] = []byte("\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n\"dp\",\"E164\",\"4\",\"Unsecured\",\"dp.example.net\"\r\n")
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"+15550005000"`), 1)
			d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"SIPResourceIdentifier\",\"EmailAddresses\"\r\n\"a@example.net\",\"True\",\"dp\",\"+1555010100199999999\",\"SMTP:a@example.net|EUM:1001;phone-context=dp.example.net\"\r\n")
		}},
		{"sip_user with a space", func(d map[string][]byte) {
			d["dp.csv"] = []byte("\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n\"dp\",\"SipName\",\"4\",\"Unsecured\",\"dp.example.net\"\r\n")
			d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n\"a@example.net\",\"True\",\"dp\",\"EUM:1001;phone-context=dp.example.net|eum:bad user@example.net;phone-context=dp.example.net\"\r\n")
		}},
		{"backend host", func(d map[string][]byte) {
			d["svc.csv"] = []byte("\"Name\",\"MaxCallsAllowed\",\"UMStartupMode\"\r\n\"UM 1\",\"50\",\"TCP\"\r\n")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := minimal()
			tc.edit(d)
			res := importData(t, minimalNames, d)
			if res.Config == nil {
				return // refused: fine
			}
			if p := checkLikeConfigCheck(res.Config); len(p) > 0 {
				t.Fatalf("exit status %d, but config check would refuse: %v\n%s", res.Report.ExitStatus, p, res.Config)
			}
		})
	}
}

// Found by review: the TLS comment put UMCertificateThumbprint through wrap() only
// (config.go:115-116), not commentText: a control character (or invalid
// UTF-8 from a CSV) lands raw in a comment, which TOML forbids.
func TestReviewCommentControlChar(t *testing.T) {
	for _, bad := range []string{"AB\x01CD", "AB\xffCD", "AB\x7fCD"} {
		d := minimal()
		d["cr.csv"] = []byte("\"Name\",\"SipTcpListeningPort\",\"SipTlsListeningPort\",\"UMStartupMode\",\"IPAddressFamily\",\"UMCertificateThumbprint\"\r\n" +
			"\"um1\",\"5060\",\"5061\",\"TLS\",\"IPv4Only\",\"" + bad + "\"\r\n")
		res := importData(t, minimalNames, d)
		if res.Config != nil {
			if p := checkLikeConfigCheck(res.Config); len(p) > 0 {
				t.Errorf("thumbprint %q: exit status %d, but the config fails: %v", bad, res.Report.ExitStatus, p)
			}
		}
	}
}

// Found by review: a CSV whose header is not quoted (Excel's "Save as CSV", or a
// hand-edited file, which the docs offer the CSV set for) is refused as
// "neither CLIXML nor a CSV" by sniff (input.go:77) before the header is
// looked at.
func TestReviewUnquotedCSVHeader(t *testing.T) {
	d := minimal()
	d["gw.csv"] = []byte("Name,Address,Port,Status\r\ngw,192.0.2.1,5060,Enabled\r\n")
	res := importData(t, minimalNames, d)
	if res.Report.ExitStatus == ExitRefused {
		t.Fatalf("refused: %s", fmtErrors(res))
	}
}

// Found by review: warnings carry raw export text with %s (e.g. mapping.go:546, the
// phone-context), and WriteText prints them as they are (report.go:104):
// a value with a line break forges lines of the human report.
func TestReviewTextReportOneLinePerWarning(t *testing.T) {
	d := minimal()
	d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n" +
		"\"a@example.net\",\"True\",\"dp\",\"EUM:1001;phone-context=dp.example.net|eum:2001;phone-context=y\nimport complete\nz\"\r\n")
	res := importData(t, minimalNames, d)
	var b bytes.Buffer
	_ = res.Report.WriteText(&b)
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "import complete" && res.Report.ExitStatus != ExitComplete {
			t.Fatalf("exit status %d, but the text report has a line %q:\n%s", res.Report.ExitStatus, l, b.String())
		}
	}
}

// Found by review: memory was bounded by the largest single value, not by maxValue:
// encoding/xml reads a whole text node before text() sees it (the comment at
// clixml.go:24-26), so a skipped 32 MB property costs 32 MB+.
func TestReviewHugeValueMemory(t *testing.T) {
	doc := objsOpen + `<Obj RefId="0"><TN RefId="0"><T>UMDialPlan</T></TN><Props><S N="Unwanted">` +
		strings.Repeat("x", 32<<20) + `</S></Props></Obj></Objs>`
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _ = Read(strings.NewReader(doc), "huge", Options{}, func(*Object) error { return nil }, func(Warning) {})
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 { // the bounded run (2 MiB) and its copies, race detector included; was 64 MiB
		t.Fatalf("reading one 32 MB value allocated %d MB", got>>20)
	}
}
