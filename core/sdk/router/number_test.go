package router

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNumber(t *testing.T) {
	telExtn4 := NumberFormat{URIType: TelExtn, Digits: 4}
	e164 := NumberFormat{URIType: E164}
	sip := NumberFormat{URIType: SIPName}
	tests := []struct {
		name       string
		give       string
		giveFormat NumberFormat
		want       string
		wantErr    error
	}{
		{name: "telextn", give: "1001", giveFormat: telExtn4, want: "1001"},
		{name: "telextn leading zeros", give: "0001", giveFormat: telExtn4, want: "0001"},
		{name: "telextn too short", give: "101", giveFormat: telExtn4, wantErr: ErrWrongLength},
		{name: "telextn too long", give: "10011", giveFormat: telExtn4, wantErr: ErrWrongLength},
		{name: "telextn letters", give: "10a1", giveFormat: telExtn4, wantErr: ErrNotDigits},
		{name: "telextn plus", give: "+100", giveFormat: telExtn4, wantErr: ErrNotDigits},
		{name: "telextn unicode digits", give: "١٠٠١", giveFormat: telExtn4, wantErr: ErrNotDigits},
		{name: "telextn empty", give: "", giveFormat: telExtn4, wantErr: ErrEmptyNumber},
		{name: "telextn 20 digits", give: strings.Repeat("9", 20), giveFormat: NumberFormat{URIType: TelExtn, Digits: 20}, want: strings.Repeat("9", 20)},
		{name: "e164", give: "+4930123456", giveFormat: e164, want: "+4930123456"},
		{name: "e164 one digit", give: "+1", giveFormat: e164, want: "+1"},
		{name: "e164 fifteen digits", give: "+123456789012345", giveFormat: e164, want: "+123456789012345"},
		{name: "e164 sixteen digits", give: "+1234567890123456", giveFormat: e164, wantErr: ErrNotE164},
		{name: "e164 without plus", give: "4930123456", giveFormat: e164, wantErr: ErrNotE164},
		{name: "e164 lone plus", give: "+", giveFormat: e164, wantErr: ErrNotE164},
		{name: "e164 separators", give: "+49-30-123", giveFormat: e164, wantErr: ErrNotE164},
		{name: "e164 empty", give: "", giveFormat: e164, wantErr: ErrEmptyNumber},
		{name: "sip name folds case", give: "Alice.Smith", giveFormat: sip, want: "alice.smith"},
		{name: "sip name digits", give: "1001", giveFormat: sip, want: "1001"},
		{name: "sip name with space", give: "alice smith", giveFormat: sip, wantErr: ErrNotSIPUser},
		{name: "sip name with control", give: "alice\x00", giveFormat: sip, wantErr: ErrNotSIPUser},
		{name: "sip name invalid utf-8", give: "\xff", giveFormat: sip, wantErr: ErrNotSIPUser},
		{name: "sip name empty", give: "", giveFormat: sip, wantErr: ErrEmptyNumber},
		{name: "unknown uri type", give: "1001", giveFormat: NumberFormat{URIType: "Tel"}, wantErr: ErrURIType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.giveFormat.Key(tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Key(%q) error = %v, want %v", tt.give, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Key(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestValidCaller(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"", true},
		{"anonymous", true},
		{"ANONYMOUS", true},
		{"4711", true},
		{"+4930123456", true},
		{"+", false},
		{"alice", false},
		{"47 11", false},
		{"++4711", false},
		{"4711+", false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := ValidCaller(tt.give); got != tt.want {
				t.Errorf("ValidCaller(%q) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

// FuzzParseNumber checks NumberFormat.Key's promises for every URI type: it
// never panics, what it accepts has the documented shape, and the key it
// returns parses to itself.
func FuzzParseNumber(f *testing.F) {
	f.Add("1001", uint8(0), 4)
	f.Add("10011", uint8(0), 4)
	f.Add("+4930123456", uint8(1), 0)
	f.Add("+1234567890123456", uint8(1), 0)
	f.Add("Alice", uint8(2), 0)
	f.Add("a b", uint8(2), 0)
	f.Add("İ", uint8(2), 0)
	f.Add("", uint8(3), 20)
	types := []URIType{TelExtn, E164, SIPName, "bogus"}
	f.Fuzz(func(t *testing.T, s string, typ uint8, digits int) {
		format := NumberFormat{URIType: types[int(typ)%len(types)], Digits: digits}
		key, err := format.Key(s)
		if err != nil {
			if key != "" {
				t.Fatalf("Key(%q) = %q with error %v", s, key, err)
			}
			return
		}
		switch format.URIType {
		case TelExtn:
			if key != s || len(key) != digits || !allDigits(key) {
				t.Fatalf("TelExtn/%d accepted %q as %q", digits, s, key)
			}
		case E164:
			if key != s || key[0] != '+' || len(key) < 2 || len(key) > 16 || !allDigits(key[1:]) {
				t.Fatalf("E164 accepted %q as %q", s, key)
			}
		case SIPName:
			if key != strings.ToLower(s) || strings.ContainsAny(key, " \t\r\n") {
				t.Fatalf("SipName accepted %q as %q", s, key)
			}
		default:
			t.Fatalf("unknown uri type %q accepted %q", format.URIType, s)
		}
		if again, err := format.Key(key); err != nil || again != key {
			t.Fatalf("Key(%q) = %q, %v; want the key back", key, again, err)
		}
	})
}
