package exchimport

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds %s: %v", pattern, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fuzzImport reads data as an export and maps it: whatever it holds, the
// import ends with a config or a refusal, never a panic or a hang, and a
// config only with exit status 0 or 1.
func fuzzImport(t *testing.T, data []byte) {
	t.Helper()
	im := New(Options{})
	_ = im.Add(bytes.NewReader(data), "fuzz")
	res := im.Finish()
	if (res.Config == nil) != (res.Report.ExitStatus == ExitRefused) {
		t.Fatalf("config written %v with exit status %d", res.Config != nil, res.Report.ExitStatus)
	}
	var buf bytes.Buffer
	if err := res.Report.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
}

func FuzzReadCLIXML(f *testing.F) {
	addSeeds(f, "*.clixml")
	f.Add([]byte(`<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0"><TN RefId="0"><T>Deserialized.Microsoft.Exchange.Data.Directory.Management.UMMailbox</T></TN><Props><S N="PrimarySmtpAddress">a_x000D__x000A_b</S><Obj N="EmailAddresses" RefId="1"><LST><S>EUM:1;phone-context=x</S></LST></Obj><Ref N="Extensions" RefId="1"/></Props></Obj></Objs>`))
	// Small seeds the fuzzer can mutate quickly: one object of each kind.
	for _, typ := range []string{"UMIPGateway", "UMHuntGroup", "UMDialPlan", "UMMailboxPolicy", "UMAutoAttendant", "UMServer", "SIPFEServerConfiguration"} {
		f.Add([]byte(objsOpen + `<Obj RefId="0"><TN RefId="0"><T>Deserialized.` + typ + `</T></TN><ToString>x</ToString><Props><S N="Name">x</S>` +
			`<S N="Address">192.0.2.1</S><S N="UMIPGateway">x</S><S N="UMDialPlan">x</S><S N="PilotIdentifier">1</S><S N="URIType">TelExtn</S>` +
			`<I32 N="NumberOfDigitsInExtension">1</I32><Obj N="BusinessHoursKeyMapping" RefId="1"><LST><S>1,a,1,,</S></LST></Obj></Props></Obj></Objs>`))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImport(t, data)
		fuzzImport(t, windows(data))
	})
}

func FuzzReadCSV(f *testing.F) {
	addSeeds(f, "*.csv")
	f.Add([]byte("#TYPE Selected.Deserialized.Microsoft.Exchange.Data.Directory.Management.UMMailbox\r\n\"PrimarySmtpAddress\",\"UMDialPlan\",\"EmailAddresses\"\r\n\"a\",\"b\",\"EUM:1;phone-context=x|smtp:a\"\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImport(t, data)
	})
}
