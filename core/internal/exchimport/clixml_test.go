package exchimport

import (
	"slices"
	"strings"
	"testing"
)

const objsOpen = `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">`

// readOne reads a CLIXML document and returns its objects and skips.
func readOne(t *testing.T, doc string) ([]*Object, []Warning) {
	t.Helper()
	var objs []*Object
	var skipped []Warning
	_, err := Read(strings.NewReader(doc), "t.clixml", Options{},
		func(o *Object) error { objs = append(objs, o); return nil },
		func(w Warning) { skipped = append(skipped, w) })
	if err != nil {
		t.Fatal(err)
	}
	return objs, skipped
}

func TestCLIXMLValues(t *testing.T) {
	doc := objsOpen + `
<Obj RefId="0"><TN RefId="0"><T>Deserialized.Selected.Deserialized.Microsoft.Exchange.Data.Directory.SystemConfiguration.UMDialPlan</T><T>System.Object</T></TN>
  <ToString>DP</ToString>
  <Props>
    <S N="Name">D_x0041__x000D__x000A_P &amp; co</S>
    <Obj N="URIType" RefId="1"><TN RefId="1"><T>Microsoft.Exchange.Data.Directory.SystemConfiguration.UMUriType</T><T>System.Enum</T></TN><ToString>E164</ToString><I32>2</I32></Obj>
    <Obj N="VoIPSecurity" RefId="2"><TN RefId="2"><T>UMVoIPSecurityType</T><T>System.Enum</T></TN><I32>1</I32></Obj>
    <I32 N="NumberOfDigitsInExtension">5</I32>
    <Obj N="AccessTelephoneNumbers" RefId="3"><TN RefId="3"><T>System.Collections.ArrayList</T></TN><IE><S>+1 555</S><Nil/><Obj RefId="4"><ToString>+2 555</ToString><Props><S N="x">y</S></Props></Obj></IE></Obj>
    <Ref N="PilotIdentifierList" RefId="3" />
    <Obj N="Unwanted" RefId="5"><LST><S>a</S></LST></Obj>
    <Obj N="ConfiguredInternationalGroups" RefId="6"><LST /></Obj>
    <Nil N="OperatorExtension" />
    <S N="PhoneContext">_xD83D__xDE00_</S>
  </Props>
  <MS><S N="Name">from MS, ignored</S></MS>
</Obj>
<Obj RefId="7"><TNRef RefId="0" /><Props><S N="Name">second</S><Ref N="AllowedInternationalGroups" RefId="5" /><Ref N="OperatorExtension" RefId="0" /></Props></Obj>
<Obj RefId="8"><TN RefId="9"><T>Deserialized.System.Diagnostics.Process</T></TN><Props><S N="Name">x</S></Props></Obj>
<S>a bare string</S>
</Objs>`
	objs, skipped := readOne(t, doc)
	if len(objs) != 2 {
		t.Fatalf("%d objects, want 2", len(objs))
	}
	o := objs[0]
	for _, tt := range []struct {
		prop string
		want Value
	}{
		{"Name", Value{Text: "DA\r\nP & co"}},
		{"URIType", Value{Text: "E164"}},
		{"VoIPSecurity", Value{Text: "1"}},
		{"NumberOfDigitsInExtension", Value{Text: "5"}},
		{"AccessTelephoneNumbers", Value{IsList: true, List: []string{"+1 555", "+2 555"}}},
		{"PilotIdentifierList", Value{IsList: true, List: []string{"+1 555", "+2 555"}}},
		{"ConfiguredInternationalGroups", Value{IsList: true}},
		{"OperatorExtension", Value{Nil: true}},
		{"PhoneContext", Value{Text: "😀"}},
	} {
		got := o.Props[tt.prop]
		if got.Text != tt.want.Text || got.IsList != tt.want.IsList || got.Nil != tt.want.Nil || !slices.Equal(got.List, tt.want.List) {
			t.Errorf("%s = %+v, want %+v", tt.prop, got, tt.want)
		}
	}
	if o.Kind != KindDialPlan || objs[1].Kind != KindDialPlan {
		t.Errorf("kinds %s, %s: want %s through Selected./Deserialized. and TNRef", o.Kind, objs[1].Kind, KindDialPlan)
	}
	if _, kept := o.Props["Unwanted"]; kept {
		t.Error("a property the mapping does not read was kept")
	}
	if got := objs[1].List("AllowedInternationalGroups"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Ref to a skipped property's object = %v, want [a]", got)
	}
	if got := objs[1].Str("OperatorExtension"); got != "DP" {
		t.Errorf("Ref to a top-level object = %q, want its ToString DP", got)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0].Message, "System.Diagnostics.Process skipped") {
		t.Errorf("skipped %v, want the Process object", skipped)
	}
}

func TestCLIXMLDepthBound(t *testing.T) {
	doc := objsOpen + `<Obj RefId="0"><TN RefId="0"><T>UMDialPlan</T></TN><Props><Obj N="AccessTelephoneNumbers"><LST>` +
		strings.Repeat("<Obj><LST>", 200) + strings.Repeat("</LST></Obj>", 200) + `</LST></Obj></Props></Obj></Objs>`
	_, err := Read(strings.NewReader(doc), "deep", Options{}, func(*Object) error { return nil }, func(Warning) {})
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("err = %v, want the nesting bound", err)
	}
}

func TestCLIXMLValueBound(t *testing.T) {
	doc := objsOpen + `<Obj RefId="0"><TN RefId="0"><T>UMDialPlan</T></TN><Props><S N="Name">` +
		strings.Repeat("x", maxValue+1) + `</S></Props></Obj></Objs>`
	_, err := Read(strings.NewReader(doc), "long", Options{}, func(*Object) error { return nil }, func(Warning) {})
	if err == nil || !strings.Contains(err.Error(), "a value longer than") {
		t.Fatalf("err = %v, want the value bound", err)
	}
}

func TestCSVListSeparator(t *testing.T) {
	csv := "\"PrimarySmtpAddress\",\"UMDialPlan\",\"EmailAddresses\",\"Extensions\"\r\n" +
		"\"a@example.net\",\"dp\",\"SMTP:a@example.net;EUM:2001;phone-context=dp.example.net;eum:2101;phone-context=dp.example.net\",\"2001;2101\"\r\n"
	var got *Object
	_, err := Read(strings.NewReader(csv), "mb.csv", Options{ListSep: ";"}, func(o *Object) error { got = o; return nil }, func(Warning) {})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SMTP:a@example.net", "EUM:2001;phone-context=dp.example.net", "eum:2101;phone-context=dp.example.net"}
	if l := got.List("EmailAddresses"); !slices.Equal(l, want) {
		t.Errorf("EmailAddresses = %q, want %q", l, want)
	}
	if l := got.List("Extensions"); !slices.Equal(l, []string{"2001", "2101"}) {
		t.Errorf("Extensions = %q", l)
	}
}

func TestCSVDelimiters(t *testing.T) {
	for _, d := range []string{",", ";", "\t"} {
		csv := strings.Join([]string{`"Name"`, `"Address"`, `"Port"`, `"Status"`}, d) + "\r\n" +
			strings.Join([]string{`"gw"`, `"192.0.2.1"`, `"5060"`, `"Enabled"`}, d) + "\r\n"
		var got *Object
		if _, err := Read(strings.NewReader(csv), "gw.csv", Options{}, func(o *Object) error { got = o; return nil }, func(Warning) {}); err != nil {
			t.Fatalf("delimiter %q: %v", d, err)
		}
		if got == nil || got.Kind != KindGateway || got.Str("Address") != "192.0.2.1" {
			t.Errorf("delimiter %q: %+v", d, got)
		}
	}
}

func TestLastName(t *testing.T) {
	for give, want := range map[string]string{
		"EXNET-TelExtn": "EXNET-TelExtn",
		"example.net/Configuration/Unified Messaging/EXNET-TelExtn":              "EXNET-TelExtn",
		`CN=EXNET-TelExtn,CN=UM DialPlan Container,CN=Example,DC=example,DC=net`: "EXNET-TelExtn",
		`CN=Smith\, John,CN=Users,DC=example,DC=net`:                             "Smith, John",
		`EXNET-GW1\HG-Main`: "HG-Main",
		" spaced ":          "spaced",
	} {
		if got := lastName(give); got != want {
			t.Errorf("lastName(%q) = %q, want %q", give, got, want)
		}
	}
}
