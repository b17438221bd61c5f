package exchimport

import (
	"bytes"
	"strings"
	"testing"
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
