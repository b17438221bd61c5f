package exchimport

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// csvSet is the flat CSV set of the fixture organisation.
var csvSet = []string{"gateways.csv", "huntgroups.csv", "dialplans.csv", "mailboxpolicies.csv",
	"autoattendants.csv", "mailboxes.csv", "umservice.csv", "callrouter.csv"}

// importData imports the named inputs (name → bytes) in the given order.
func importData(t *testing.T, names []string, data map[string][]byte) *Result {
	t.Helper()
	im := New(Options{})
	for _, n := range names {
		_ = im.Add(bytes.NewReader(data[n]), n)
	}
	return im.Finish()
}

// importFiles imports testdata files.
func importFiles(t *testing.T, names ...string) *Result {
	t.Helper()
	data := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		data[n] = b
	}
	return importData(t, names, data)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", file, got)
	}
}

func TestImportSample(t *testing.T) {
	res := importFiles(t, "sample.clixml")
	if res.Report.ExitStatus != ExitWarnings {
		t.Fatalf("exit status %d, want %d (the fixture's dangling policy and the Dual mode are warnings); errors %v",
			res.Report.ExitStatus, ExitWarnings, res.Report.Errors)
	}
	golden(t, "sample.golden.toml", res.Config)
	var report bytes.Buffer
	if err := res.Report.WriteJSON(&report); err != nil {
		t.Fatal(err)
	}
	golden(t, "sample.report.golden.json", report.Bytes())
}

func TestCSVSetGivesTheSameConfig(t *testing.T) {
	clixml := importFiles(t, "sample.clixml")
	csv := importFiles(t, csvSet...)
	if csv.Report.ExitStatus != clixml.Report.ExitStatus {
		t.Errorf("exit status: CSV %d, CLIXML %d", csv.Report.ExitStatus, clixml.Report.ExitStatus)
	}
	if !bytes.Equal(csv.Config, clixml.Config) {
		t.Errorf("the CSV set and the CLIXML give different configs:\n--- csv\n%s\n--- clixml\n%s", csv.Config, clixml.Config)
	}
	// And whatever order the files come in.
	reversed := slices.Clone(csvSet)
	slices.Reverse(reversed)
	if again := importFiles(t, reversed...); !bytes.Equal(again.Config, csv.Config) {
		t.Errorf("the CSV set in reverse order gives another config:\n%s", again.Config)
	}
}

// windows is how Windows PowerShell 5.1 writes a file: CRLF line ends,
// UTF-16 LE with a byte order mark.
func windows(text []byte) []byte {
	crlf := bytes.ReplaceAll(bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	units := utf16.Encode([]rune(string(crlf)))
	out := []byte{0xFF, 0xFE}
	for _, u := range units {
		out = append(out, byte(u), byte(u>>8))
	}
	return out
}

func TestUTF16CopyGivesIdenticalOutput(t *testing.T) {
	raw, err := os.ReadFile("testdata/sample.clixml")
	if err != nil {
		t.Fatal(err)
	}
	utf8 := importData(t, []string{"um.clixml"}, map[string][]byte{"um.clixml": raw})
	wide := importData(t, []string{"um.clixml"}, map[string][]byte{"um.clixml": windows(raw)})
	if wide.Report.Inputs[0].Encoding != encodingUTF16LE {
		t.Errorf("encoding %q, want %q", wide.Report.Inputs[0].Encoding, encodingUTF16LE)
	}
	if !bytes.Equal(utf8.Config, wide.Config) {
		t.Errorf("the UTF-16 LE copy gives another config:\n%s", wide.Config)
	}
	var a, b bytes.Buffer
	_ = utf8.Report.WriteJSON(&a)
	_ = wide.Report.WriteJSON(&b)
	if got, want := strings.Replace(b.String(), encodingUTF16LE, encodingUTF8, 1), a.String(); got != want {
		t.Errorf("the UTF-16 LE copy gives another report:\n%s", b.String())
	}
	// A CSV written with -Encoding UTF8 by Windows PowerShell: BOM and CRLF.
	data := map[string][]byte{}
	for _, n := range csvSet {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		data[n] = append([]byte{0xEF, 0xBB, 0xBF}, bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))...)
	}
	if bom := importData(t, csvSet, data); !bytes.Equal(bom.Config, utf8.Config) {
		t.Errorf("the CSV set with BOM and CRLF gives another config:\n%s", bom.Config)
	}
}

func TestSameInputSameBytes(t *testing.T) {
	a := importFiles(t, "sample.clixml")
	for range 5 {
		if b := importFiles(t, "sample.clixml"); !bytes.Equal(a.Config, b.Config) {
			t.Fatal("two imports of one file differ")
		}
	}
}

func TestRefusedInputs(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string
	}{
		{"naive Export-Csv", "mailboxes-naive.csv", `column Extensions holds "System.Collections.ArrayList"`},
		{"Format-List", "gateways-format-list.txt", "Format-List or Format-Table text"},
		{"Format-Table", "gateways-format-table.txt", "Format-List or Format-Table text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := importFiles(t, tt.file)
			assertRefused(t, res, tt.want)
		})
	}
	for _, tt := range []struct{ name, text, want string }{
		{"JSON", `[{"Name":"EXNET-GW1"}]`, "JSON"},
		{"CSV of something else", "\"Foo\",\"Bar\"\r\n\"1\",\"2\"\r\n", "columns (Foo, Bar) are those of no UM object"},
		{"plain text", "hello\n", "neither CLIXML nor a CSV"},
		{"empty", "", "neither CLIXML nor a CSV"},
		{"XML that is not CLIXML", `<root/>`, "not PowerShell's <Objs"},
		{"truncated CLIXML", `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0">`, "unexpected EOF"},
		{"TNRef to nothing", `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0"><TNRef RefId="9"/></Obj></Objs>`, "names no earlier <TN>"},
		{"CLIXML exported too shallow", `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0"><TN RefId="0"><T>Deserialized.Microsoft.Exchange.Data.Directory.Management.UMMailbox</T></TN><Props><S N="EmailAddresses">System.Collections.ArrayList</S></Props></Obj></Objs>`, "deeper than Export-Clixml's -Depth"},
		{"ragged CSV", "\"Name\",\"Address\",\"Port\"\r\n\"a\",\"b\"\r\n", "2 fields, the header has 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := importData(t, []string{"in"}, map[string][]byte{"in": []byte(tt.text)})
			if res.Report.ExitStatus != ExitRefused || res.Config != nil {
				t.Fatalf("exit status %d, config %v: want refused", res.Report.ExitStatus, res.Config != nil)
			}
			if !strings.Contains(fmtErrors(res), tt.want) {
				t.Errorf("errors %q lack %q", fmtErrors(res), tt.want)
			}
		})
	}
}

func assertRefused(t *testing.T, res *Result, want string) {
	t.Helper()
	if res.Report.ExitStatus != ExitRefused || res.Config != nil {
		t.Fatalf("exit status %d, config written %v: want %d and none", res.Report.ExitStatus, res.Config != nil, ExitRefused)
	}
	msg := fmtErrors(res)
	for _, w := range []string{want, "Export-Clixml -Path", "edged import exchange"} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal lacks %q:\n%s", w, msg)
		}
	}
}

func fmtErrors(res *Result) string {
	var b strings.Builder
	for _, e := range res.Report.Errors {
		b.WriteString(e.String() + "\n")
	}
	return b.String()
}

// minimal is a CSV set without a single warning: one gateway, hunt group,
// TelExtn dial plan, mailbox, UM service and a TCP call router.
func minimal() map[string][]byte {
	return map[string][]byte{
		"gw.csv":  []byte("\"Name\",\"Address\",\"Port\",\"Status\"\r\n\"gw\",\"192.0.2.1\",\"5060\",\"Enabled\"\r\n"),
		"hg.csv":  []byte("\"Identity\",\"Name\",\"UMIPGateway\",\"PilotIdentifier\",\"UMDialPlan\"\r\n\"gw\\main\",\"main\",\"gw\",\"5000\",\"dp\"\r\n"),
		"dp.csv":  []byte("\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n\"dp\",\"TelExtn\",\"4\",\"Unsecured\",\"dp.example.net\"\r\n"),
		"mb.csv":  []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n\"a@example.net\",\"True\",\"dp\",\"SMTP:a@example.net|EUM:1001;phone-context=dp.example.net\"\r\n"),
		"svc.csv": []byte("\"Name\",\"MaxCallsAllowed\",\"UMStartupMode\"\r\n\"um1\",\"50\",\"TCP\"\r\n"),
		"cr.csv":  []byte("\"Name\",\"SipTcpListeningPort\",\"SipTlsListeningPort\",\"UMStartupMode\",\"IPAddressFamily\"\r\n\"um1\",\"5060\",\"5061\",\"TCP\",\"IPv4Only\"\r\n"),
	}
}

var minimalNames = []string{"gw.csv", "hg.csv", "dp.csv", "mb.csv", "svc.csv", "cr.csv"}

func TestExitStatus(t *testing.T) {
	res := importData(t, minimalNames, minimal())
	if res.Report.ExitStatus != ExitComplete {
		t.Fatalf("exit status %d, want 0; warnings %v errors %v", res.Report.ExitStatus, res.Report.Warnings, res.Report.Errors)
	}
	for _, want := range []string{`mode = "tcp"`, `listen = ["0.0.0.0"]`, `max_calls_allowed = 50`, `extension = "1001"`, `access_numbers = ["5000"]`} {
		if !strings.Contains(string(res.Config), want) {
			t.Errorf("config lacks %s:\n%s", want, res.Config)
		}
	}

	tests := []struct {
		name   string
		edit   func(map[string][]byte)
		status int
		want   string // in a warning or error
	}{
		{"dangling dial plan of a mailbox", func(d map[string][]byte) {
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte(`"dp","SMTP`), []byte(`"gone","SMTP`), 1)
		}, ExitWarnings, `UMMailbox[a@example.net].UMDialPlan: dial plan "gone" is not in the export`},
		{"dangling gateway of a hunt group", func(d map[string][]byte) {
			d["hg.csv"] = bytes.ReplaceAll(d["hg.csv"], []byte(`"gw"`), []byte(`"gw9"`))
		}, ExitWarnings, `UMHuntGroup[gw9\main].UMIPGateway: gateway "gw9" is not in the export`},
		{"extension of the wrong length", func(d map[string][]byte) {
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte("EUM:1001"), []byte("EUM:10011"), 1)
		}, ExitWarnings, `UMMailbox[a@example.net].EmailAddresses[0]: "10011" does not fit dial plan dp (4 digits)`},
		{"duplicate extension", func(d map[string][]byte) {
			d["mb.csv"] = append(d["mb.csv"], []byte("\"b@example.net\",\"True\",\"dp\",\"EUM:1001;phone-context=dp.example.net\"\r\n")...)
		}, ExitRefused, "extension 1001 of dial plan dp belongs to both a@example.net and b@example.net"},
		{"duplicate pilot", func(d map[string][]byte) {
			d["hg.csv"] = append(d["hg.csv"], []byte("\"gw\\other\",\"other\",\"gw\",\"5000\",\"dp\"\r\n")...)
		}, ExitRefused, `pilot "5000" of gateway gw is already used by hunt group gw\main`},
		{"two catch-alls", func(d map[string][]byte) {
			d["hg.csv"] = append(d["hg.csv"], []byte("\"gw\\a\",\"a\",\"gw\",\"\",\"dp\"\r\n\"gw\\b\",\"b\",\"gw\",\"\",\"dp\"\r\n")...)
		}, ExitRefused, `gateway gw already has the catch-all hunt group gw\a`},
		{"TLS mode", func(d map[string][]byte) {
			d["cr.csv"] = bytes.Replace(d["cr.csv"], []byte(`"TCP"`), []byte(`"TLS"`), 1)
		}, ExitWarnings, "UMCallRouterSettings[um1].UMStartupMode: TLS needs the call router's TLS certificate"},
		{"secured plan behind an IP gateway", func(d map[string][]byte) {
			d["dp.csv"] = bytes.Replace(d["dp.csv"], []byte("Unsecured"), []byte("SIPSecured"), 1)
		}, ExitWarnings, "leads to SIPSecured dial plan dp, whose peers are known by TLS certificate, but gateway gw has the IP address 192.0.2.1 and no FQDN"},
		{"gateway with a zone", func(d map[string][]byte) {
			d["gw.csv"] = bytes.Replace(d["gw.csv"], []byte("192.0.2.1"), []byte("fe80::1%eth0"), 1)
		}, ExitWarnings, "UMIPGateway[gw].Address: fe80::1%eth0: the zone %eth0 is dropped"},
		{"auto attendant menu", func(d map[string][]byte) {
			d["aa.csv"] = []byte("\"Name\",\"UMDialPlan\",\"Status\",\"PilotIdentifierList\",\"BusinessHoursKeyMapping\",\"AfterHoursKeyMapping\"\r\n" +
				"\"aa\",\"dp\",\"Enabled\",\"5050\",\"0,Zero,1001,,|1,One,1001,,|1,Again,1001,,|2,Two,1001,other aa,|3,Three,,,,,,nobody@example.net,,|4,Four,,,,\",\"1,Bob,,,,,,a@example.net,,\"\r\n")
		}, ExitWarnings, ""},
		{"two gateways with one address", func(d map[string][]byte) {
			d["gw.csv"] = append(d["gw.csv"], []byte("\"gw2\",\"192.0.2.1\",\"5060\",\"Enabled\"\r\n")...)
		}, ExitRefused, "UMIPGateway[gw2].Address: 192.0.2.1 is also the address of gateway gw"},
		{"the same export twice", func(d map[string][]byte) {
			for k, v := range d {
				lines := bytes.SplitN(v, []byte("\r\n"), 2)
				d[k] = append(v, lines[1]...)
			}
		}, ExitWarnings, `UMHuntGroup[gw\main]: listed twice (hg.csv:2 and hg.csv:3): the second is ignored`},
		{"E164 plan", func(d map[string][]byte) {
			d["dp.csv"] = bytes.Replace(d["dp.csv"], []byte("TelExtn"), []byte("E164"), 1)
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"+15550105000"`), 1)
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte("EUM:1001"), []byte("EUM:+15550101001"), 1)
		}, ExitWarnings, "no EUM extension in E164 dial plan dp: 1001, the last 4 digits of +15550101001, imported as the extension"},
		{"E164 plan with an extension", func(d map[string][]byte) {
			d["dp.csv"] = bytes.Replace(d["dp.csv"], []byte("TelExtn"), []byte("E164"), 1)
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"+15550105000"`), 1)
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte("EUM:1001;phone-context=dp.example.net"), []byte("EUM:+15550101001;phone-context=dp.example.net|eum:1001;phone-context=dp.example.net"), 1)
		}, ExitComplete, ""},
		{"pilot that is an extension", func(d map[string][]byte) {
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"1001"`), 1)
		}, ExitWarnings, `UMHuntGroup[gw\main].PilotIdentifier: 1001 is also a mailbox's number in dial plan dp: not imported as an access number`},
		{"two mailboxes with one phone number", func(d map[string][]byte) {
			d["mb.csv"] = []byte("\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\",\"PhoneNumber\"\r\n" +
				"\"a@example.net\",\"True\",\"dp\",\"EUM:1001;phone-context=dp.example.net\",\"+1 555 0100\"\r\n" +
				"\"b@example.net\",\"True\",\"dp\",\"EUM:1002;phone-context=dp.example.net\",\"+15550100\"\r\n")
		}, ExitWarnings, "UMMailbox[b@example.net].PhoneNumber: E.164 number +15550100 is also the number of a@example.net"},
		{"unlimited calls", func(d map[string][]byte) {
			d["svc.csv"] = bytes.Replace(d["svc.csv"], []byte(`"50"`), []byte(`"Unlimited"`), 1)
		}, ExitComplete, ""},
		{"dangling dial plan of the call router", func(d map[string][]byte) {
			d["cr.csv"] = []byte("\"Name\",\"SipTcpListeningPort\",\"UMStartupMode\",\"DialPlans\"\r\n\"um1\",\"5060\",\"TCP\",\"dp|gone\"\r\n")
		}, ExitWarnings, `UMCallRouterSettings[um1].DialPlans[1]: dial plan "gone" is not in the export`},
		{"pilot list", func(d map[string][]byte) {
			d["hg.csv"] = bytes.Replace(d["hg.csv"], []byte(`"5000"`), []byte(`"5000,5001"`), 1)
		}, ExitComplete, ""},
		{"ASCII CSV", func(d map[string][]byte) {
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte(`"True"`), []byte(`"True"`), 1)
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte("\"PrimarySmtpAddress\""), []byte("\"DisplayName\",\"PrimarySmtpAddress\""), 1)
			d["mb.csv"] = bytes.Replace(d["mb.csv"], []byte("\"a@example.net\",\"True\""), []byte("\"J?rgen\",\"a@example.net\",\"True\""), 1)
		}, ExitWarnings, `UMMailbox[a@example.net].DisplayName: "J?rgen" has a '?' beside a letter`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := minimal()
			tt.edit(d)
			names := slices.Clone(minimalNames)
			if _, ok := d["aa.csv"]; ok {
				names = append(names, "aa.csv")
			}
			res := importData(t, names, d)
			if res.Report.ExitStatus != tt.status {
				t.Errorf("exit status %d, want %d; warnings %v errors %v", res.Report.ExitStatus, tt.status, res.Report.Warnings, res.Report.Errors)
			}
			if (res.Config == nil) != (tt.status == ExitRefused) {
				t.Errorf("config written: %v, exit status %d", res.Config != nil, tt.status)
			}
			var all []string
			for _, w := range append(slices.Clone(res.Report.Warnings), res.Report.Errors...) {
				all = append(all, w.String())
			}
			wants := []string{tt.want}
			if tt.name == "auto attendant menu" {
				wants = []string{
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[0]: key "0" is not 1–9 or - (timeout)`,
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[2]: key 1 is also mapped by entry 1`,
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[3]: key 2 has 2 actions (extension, auto attendant)`,
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[3]: auto attendant "other aa" is not in the export`,
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[4]: mailbox "nobody@example.net" is not in the export`,
					`UMAutoAttendant[aa].BusinessHoursKeyMapping[5]: key 4 has neither an action nor a prompt`,
				}
				if n := len(res.Report.Warnings); n != len(wants) {
					t.Errorf("%d warnings, want %d (the after-hours menu is right)", n, len(wants))
				}
			}
			for _, want := range wants {
				if want != "" && !slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, want) }) {
					t.Errorf("no warning or error contains %q:\n%s", want, strings.Join(all, "\n"))
				}
			}
		})
	}
}

func TestReport(t *testing.T) {
	res := importFiles(t, "sample.clixml")
	var buf bytes.Buffer
	if err := res.Report.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Objects) != 14 {
		t.Errorf("%d objects in the report, want all 14 of the export", len(r.Objects))
	}
	for _, o := range r.Objects {
		if o.Result == resultImported && len(o.Became) == 0 {
			t.Errorf("%s %s is imported but became nothing", o.Kind, o.Identity)
		}
		for _, b := range o.Became {
			if !strings.Contains(string(res.Config), tableOf(b)) {
				t.Errorf("%s %s became %s, which the config lacks", o.Kind, o.Identity, b)
			}
		}
	}
	path := regexp.MustCompile(`^\w+\[[^\]]+\](\.\w+(\[\d+\])?)*$`)
	for _, w := range r.Warnings {
		if !path.MatchString(w.Path) {
			t.Errorf("warning %q has no property path", w)
		}
	}
	wantLoss := []string{"PINs", "TLS certificates", "auto attendants", "prompt audio",
		"personal greetings, recorded names, call-answering rules and delivered voice mail"}
	for _, w := range wantLoss {
		if !slices.ContainsFunc(r.NotMigrated, func(l Loss) bool { return l.What == w && l.NextStep != "" && len(l.Objects) > 0 }) {
			t.Errorf("not_migrated lacks %q with objects and a next step", w)
		}
	}
	var text bytes.Buffer
	if err := res.Report.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UMMailbox[carol@example.net].UMMailboxPolicy: mailbox policy \"EXNET-SIP Default Policy\" is not in the export",
		"cannot be migrated:", "next step:", "exit status 1"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// tableOf turns a "became" key path into the text of its table header
// or key, as the config shows it.
func tableOf(p string) string {
	p = regexp.MustCompile(`\[\d+\]$`).ReplaceAllString(p, "")
	if i := strings.Index(p, ".access_numbers"); i >= 0 {
		return "access_numbers = "
	}
	if strings.HasPrefix(p, "sip.") {
		return strings.TrimPrefix(p, "sip.") + " = "
	}
	return "[" + p
}
