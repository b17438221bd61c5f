package sipheader

import (
	"errors"
	"reflect"
	"testing"

	"github.com/umedge/umedge/core/sdk/router"
)

func TestDiversion(t *testing.T) {
	tests := []struct {
		name    string
		give    []string
		want    []router.Diversion
		wantErr bool
	}{
		{
			name: "one value with reason",
			give: []string{`<sip:1001@pbx.example.net>;reason=no-answer;counter=1`},
			want: []router.Diversion{{User: "1001", Reason: "no-answer"}},
		},
		{
			name: "two headers keep order, quoted reason and display name",
			give: []string{`"Bob, Jr." <sip:1002@10.0.0.1;user=phone>;reason="user-busy"`, `<tel:+4930123;phone-context=x>;reason=unconditional`},
			want: []router.Diversion{{User: "1002", Reason: "user-busy"}, {User: "+4930123", Reason: "unconditional"}},
		},
		{
			name: "comma separated list",
			give: []string{`<sip:1001@a>;reason=no-answer, <sip:1003@b>;reason=deflection`},
			want: []router.Diversion{{User: "1001", Reason: "no-answer"}, {User: "1003", Reason: "deflection"}},
		},
		{
			name: "escaped user",
			give: []string{`<sip:%31001@a>`},
			want: []router.Diversion{{User: "1001"}}, // %31 is "1"
		},
		{name: "unbalanced quote (Exchange rejected these)", give: []string{`"Bob <sip:1001@a>;reason=no-answer`}, wantErr: true},
		{name: "unbalanced bracket", give: []string{`<sip:1001@a;reason=no-answer`}, wantErr: true},
		{name: "addr-spec without brackets", give: []string{`sip:1001@a;reason=no-answer`}, wantErr: true},
		{name: "empty", give: []string{` , `}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Diversion(tt.give)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Diversion() error = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Diversion() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diversion() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHistoryInfo(t *testing.T) {
	tests := []struct {
		name    string
		give    []string
		want    []router.HistoryInfo
		wantErr bool
	}{
		{
			name: "RFC 7044 cause parameter",
			give: []string{`<sip:5000@gw>;index=1, <sip:1001@pbx>;index=1.1, <sip:5000@um;cause=408>;index=1.1.1;rc=1.1`},
			want: []router.HistoryInfo{{Index: "1", User: "5000"}, {Index: "1.1", User: "1001"}, {Index: "1.1.1", User: "5000", Cause: "408"}},
		},
		{
			name: "RFC 4244 escaped Reason",
			give: []string{`<sip:1002@pbx>;index=1`, `<sip:um@um?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%22>;index=1.1`},
			want: []router.HistoryInfo{{Index: "1", User: "1002"}, {Index: "1.1", User: "um", Cause: "302"}},
		},
		{
			// Headers out of order (a proxy that prepends): the index decides.
			name: "entries out of index order",
			give: []string{`<sip:1003@x>;index=1.1, <sip:1002@x?Reason=SIP%3Bcause%3D302>;index=1`},
			want: []router.HistoryInfo{{Index: "1", User: "1002", Cause: "302"}, {Index: "1.1", User: "1003"}},
		},
		{
			name: "numeric, not lexical, order; bad indexes last, in place",
			give: []string{`<sip:a@x>;index=1.10, <sip:b@x>;index=bogus, <sip:c@x>;index=1.9, <sip:d@x>, <sip:e@x>;index=1`},
			want: []router.HistoryInfo{{Index: "1", User: "e"}, {Index: "1.9", User: "c"}, {Index: "1.10", User: "a"},
				{Index: "bogus", User: "b"}, {Index: "", User: "d"}},
		},
		{name: "unterminated quote", give: []string{`"x <sip:1@a>;index=1`}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HistoryInfo(tt.give)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("HistoryInfo() error = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("HistoryInfo() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("HistoryInfo() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTooManyEntries(t *testing.T) {
	v := ""
	for i := 0; i <= maxEntries; i++ {
		v += "<sip:1@a>,"
	}
	if _, err := Diversion([]string{v}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Diversion() error = %v, want ErrMalformed", err)
	}
}

func FuzzDiversion(f *testing.F) {
	for _, s := range []string{
		`<sip:1001@pbx.example.net>;reason=no-answer;counter=1`,
		`"Bob, Jr." <sip:1002@10.0.0.1;user=phone>;reason="user-busy", <tel:+4930123>`,
		`"Bob <sip:1001@a>`, `<<sip:1@a>>`, `<sip:%zz@a>`, `<sips:[::1]:5061>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Diversion([]string{s})
		if err != nil && d != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unexpected error type %v", err)
		}
	})
}

func FuzzHistoryInfo(f *testing.F) {
	for _, s := range []string{
		`<sip:5000@gw>;index=1, <sip:1001@pbx>;index=1.1, <sip:5000@um;cause=408>;index=1.1.1;rc=1.1`,
		`<sip:um@um?Reason=SIP%3Bcause%3D302>;index=1.1`, `<sip:a@b?Reason=%>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := HistoryInfo([]string{s}); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unexpected error type %v", err)
		}
	})
}

func TestNumber(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "200": 200, "999999999": 999999999} {
		if n, ok := Number([]byte(in)); !ok || n != want {
			t.Errorf("Number(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	// Overflow, signs, spaces, empty: refused, never wrapped.
	for _, in := range []string{"", "1000000000", "99999999999999999999", "-1", "+1", " 1", "1 ", "1a", "０"} {
		if n, ok := Number([]byte(in)); ok {
			t.Errorf("Number(%q) = %d, true; want refused", in, n)
		}
	}
}
