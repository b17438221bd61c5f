package sipptest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRenderCallMix(t *testing.T) {
	b, err := Run{Scenario: UACCallMix, Target: "127.0.0.1:5060", Hold: 1500 * time.Millisecond}.Render()
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	got := string(b)
	want := []string{
		"INVITE sip:[field1]@127.0.0.1:5060 SIP/2.0",
		`value="Diversion: &lt;sip:[field3]@[local_ip]&gt;;reason=[field2];counter=1"`,
		`<recv response="200" rrs="true">`,
		`<ereg regexp="^v=0" search_in="body" check_it="true" assign_to="sdp"/>`,
		"ACK [next_url] SIP/2.0",
		`<pause milliseconds="1500"/>`,
		"BYE [next_url] SIP/2.0",
		"CSeq: 2 BYE",
	}
	for _, code := range mixCodes {
		want = append(want, fmt.Sprintf(`<recv response="%d" optional="true" next="reject">`, code))
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("rendered scenario lacks %q:\n%s", w, got)
		}
	}
	// The ACK of a rejected call repeats the INVITE's branch; the ACK and
	// BYE of an answered one follow the route set of the 200.
	if n := strings.Count(got, ";branch=z9hG4bK-[pid]-[call_number]-call\n"); n != 2 {
		t.Errorf("%d Via lines with the INVITE's branch, want 2 (INVITE and the ACK of a rejection)", n)
	}
	if n := strings.Count(got, "[routes]"); n != 2 {
		t.Errorf("%d [routes], want 2 (ACK and BYE)", n)
	}
}

func TestCallMixRun(t *testing.T) {
	tests := []struct {
		name    string
		give    Run
		wantErr bool
	}{
		{name: "ok", give: Run{Scenario: UACCallMix, Target: "127.0.0.1:5060", Inject: "mix.csv", Hold: time.Second}},
		{name: "no inject file", give: Run{Scenario: UACCallMix, Target: "127.0.0.1:5060"}, wantErr: true},
		{name: "negative hold", give: Run{Scenario: UACCallMix, Target: "127.0.0.1:5060", Inject: "mix.csv", Hold: -time.Second}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.withDefaults().validate()
			if got := errors.Is(err, ErrInvalidRun); got != tt.wantErr {
				t.Errorf("validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestUASInvalid(t *testing.T) {
	tests := []struct {
		name string
		give UAS
		want string
	}{
		{name: "no port", give: UAS{Addr: "127.0.0.1"}, want: "uas address"},
		{name: "tls", give: UAS{Addr: "127.0.0.1:5070", Transport: "tls"}, want: "uas transport"},
		{name: "negative calls", give: UAS{Addr: "127.0.0.1:5070", Calls: -1}, want: "uas calls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.give.Start()
			if p != nil {
				_, _ = p.Stop(0)
			}
			if !errors.Is(err, ErrInvalidRun) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start() = %v, want %v naming %s", err, ErrInvalidRun, tt.want)
			}
		})
	}
}

func TestRenderUAS(t *testing.T) {
	b, err := Run{Scenario: UASAnswer}.Render()
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	got := string(b)
	for _, w := range []string{`<recv request="INVITE" crlf="true"/>`, "SIP/2.0 200 OK", "[last_Record-Route:]", "m=audio [media_port] RTP/AVP 0", `<recv request="BYE"/>`} {
		if !strings.Contains(got, w) {
			t.Errorf("rendered callee lacks %q:\n%s", w, got)
		}
	}
}
