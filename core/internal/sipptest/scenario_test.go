package sipptest

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestScenariosEmbedded(t *testing.T) {
	got := Scenarios()
	for _, want := range []string{UAC302, UACCode, UACRetrans, UACOptions} {
		if !slices.Contains(got, want) {
			t.Errorf("Scenarios() = %v, missing %s", got, want)
		}
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name     string
		give     Run
		want     []string // substrings of the rendered XML
		wantNot  []string
		wantErr  error
		wantRecv int // number of <recv elements
	}{
		{
			name: "302 defaults",
			give: Run{Scenario: UAC302},
			want: []string{
				`branch=[branch]`, `branch=[branch-3]`, `<recv response="302"`,
				`regexp="." search_in="hdr" header="Contact:" check_it="true"`,
				`From: <sip:4000@[local_ip]:[local_port]>`,
			},
			wantRecv: 2,
		},
		{
			name: "302 with other codes moves the ack branch offset",
			give: Run{Scenario: UAC302, Codes: []int{302, 404, 503, 404}},
			want: []string{
				`<recv response="404" optional="true" response_txn="invite" next="ack"/>`,
				`<recv response="503" optional="true" response_txn="invite" next="ack"/>`,
				`branch=[branch-5]`,
			},
			wantRecv: 4,
		},
		{
			name: "contact pattern is anchored past the blank and escaped",
			give: Run{Scenario: UAC302, ContactPattern: `^<sip:1001@127\.0\.0\.1:5062;transport=tcp>$`},
			want: []string{"regexp=\"^[ \t]*" + `&lt;sip:1001@127\\.0\\.0\\.1:5062;transport=tcp&gt;$"`},
		},
		{
			name: "extra headers and from user",
			give: Run{Scenario: UAC302, FromUser: "4321", Headers: []string{"Diversion: <sip:1002@gw>;reason=no-answer", "History-Info: <sip:5000@gw>;index=1"}},
			want: []string{
				"User-Agent: umedge-sipptest\n      Diversion: <sip:1002@gw>;reason=no-answer\n      History-Info: <sip:5000@gw>;index=1\n",
				`From: <sip:4321@`,
			},
		},
		{
			name: "target and transport are written into the messages",
			give: Run{Scenario: UAC302, Target: "127.0.0.1:5061", Transport: "tls"},
			want: []string{
				"INVITE sip:[service]@127.0.0.1:5061 SIP/2.0",
				"Via: SIP/2.0/TLS [local_ip]:[local_port];branch=[branch]",
				";transport=TLS>",
				"To: <sip:[service]@127.0.0.1:5061>",
			},
		},
		{
			name:     "code scenario with retry-after",
			give:     Run{Scenario: UACCode, Codes: []int{503}, RetryAfter: true},
			want:     []string{`<recv response="503" response_txn="invite">`, `header="Retry-After:" check_it="true"`, `branch=[branch-3]`},
			wantRecv: 2,
		},
		{
			name:     "code scenario with alternatives",
			give:     Run{Scenario: UACCode, Codes: []int{403, 404}},
			want:     []string{`<recv response="403" optional="true" response_txn="invite" next="ack">`, `<recv response="404" response_txn="invite">`, `branch=[branch-4]`},
			wantNot:  []string{`header="Retry-After:"`},
			wantRecv: 3,
		},
		{
			name: "retransmission scenario repeats the branch",
			give: Run{Scenario: UACRetrans},
			want: []string{`branch=[branch-3]`, `branch=[branch-6]`, `<strcmp assign_to="contact_cmp"`},
		},
		{name: "code scenario needs codes", give: Run{Scenario: UACCode}, wantErr: ErrInvalidRun},
		{name: "bad status code", give: Run{Scenario: UACCode, Codes: []int{42}}, wantErr: ErrInvalidRun},
		{name: "header with line break", give: Run{Scenario: UAC302, Headers: []string{"A: b\r\nC: d"}}, wantErr: ErrInvalidRun},
		{name: "header without colon", give: Run{Scenario: UAC302, Headers: []string{"Diversion"}}, wantErr: ErrInvalidRun},
		{name: "unknown scenario", give: Run{Scenario: "nope.xml"}, wantErr: ErrUnknownScenario},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.give.Render()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Render() = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			got := string(b)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("rendered scenario lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("rendered scenario has %q", w)
				}
			}
			if tt.wantRecv > 0 {
				if n := strings.Count(got, "<recv "); n != tt.wantRecv {
					t.Errorf("%d <recv> elements, want %d", n, tt.wantRecv)
				}
			}
			if strings.Contains(got, "{{") || strings.Contains(got, "<no value>") {
				t.Errorf("template left unrendered:\n%s", got)
			}
		})
	}
}

func TestRenderAllEmbedded(t *testing.T) {
	for _, name := range Scenarios() {
		t.Run(name, func(t *testing.T) {
			if _, err := (Run{Scenario: name, Codes: []int{404}}).Render(); err != nil {
				t.Fatalf("Render() = %v", err)
			}
		})
	}
}

func TestXMLAttr(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "plain", give: "1001@", want: "1001@"},
		{name: "backslash doubled", give: `127\.0`, want: `127\\.0`},
		{name: "quote", give: `a"b`, want: `a\"b`},
		{name: "angle brackets and ampersand", give: `<a&b>`, want: `&lt;a&amp;b&gt;`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := xmlAttr(tt.give); got != tt.want {
				t.Errorf("xmlAttr(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		give    Run
		want    []string // flags, each followed by its value when it has one
		wantNot []string
	}{
		{
			name:    "udp defaults",
			give:    Run{Scenario: UAC302, Target: "127.0.0.1:5060"},
			want:    []string{"127.0.0.1:5060", "-t u1", "-i 127.0.0.1", "-s 1001", "-m 1", "-r 10", "-rp 1000", "-recv_timeout 5000", "-timeout 31", "-timeout_error", "-nostdin"},
			wantNot: []string{"-nr", "-l", "-tls_cert"},
		},
		{
			name: "tcp with limits",
			give: Run{Scenario: UAC302, Target: "127.0.0.1:5060", Transport: "TCP", Calls: 100, Rate: 50, MaxConcurrent: 7, Service: "5000"},
			want: []string{"-t t1", "-m 100", "-r 50", "-l 7", "-s 5000", "-timeout 32"},
		},
		{
			name: "tls passes the certificate",
			give: Run{Scenario: UAC302, Target: "[::1]:5061", Transport: "tls", TLSCert: "c.pem", TLSKey: "k.pem"},
			want: []string{"-t l1", "-i ::1", "-tls_cert c.pem", "-tls_key k.pem"},
		},
		{
			name: "retransmission scenario over udp disables sipp retransmissions",
			give: Run{Scenario: UACRetrans, Target: "127.0.0.1:5060"},
			want: []string{"-nr"},
		},
		{
			name:    "retransmission scenario over tcp keeps them",
			give:    Run{Scenario: UACRetrans, Target: "127.0.0.1:5060", Transport: "tcp"},
			wantNot: []string{"-nr"},
		},
		{
			name: "vars and extra args",
			give: Run{Scenario: UAC302, Target: "127.0.0.1:5060", Vars: map[string]string{"b": "2", "a": "1"}, ExtraArgs: []string{"-aa"}},
			want: []string{"-set a 1 -set b 2 -aa"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.give.withDefaults()
			if err := r.validate(); err != nil {
				t.Fatalf("validate() = %v", err)
			}
			args, err := r.args(t.TempDir(), "s.xml", r.Target, r.Transport)
			if err != nil {
				t.Fatalf("args() = %v", err)
			}
			line := " " + strings.Join(args, " ") + " "
			for _, w := range tt.want {
				if !strings.Contains(line, " "+w+" ") {
					t.Errorf("args %q lack %q", line, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(line, " "+w+" ") {
					t.Errorf("args %q have %q", line, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give Run
	}{
		{name: "no scenario", give: Run{Target: "127.0.0.1:5060"}},
		{name: "no target", give: Run{Scenario: UAC302}},
		{name: "target without port", give: Run{Scenario: UAC302, Target: "127.0.0.1"}},
		{name: "unknown transport", give: Run{Scenario: UAC302, Target: "127.0.0.1:5060", Transport: "sctp"}},
		{name: "tls without key", give: Run{Scenario: UAC302, Target: "127.0.0.1:5061", Transport: "tls", TLSCert: "c.pem"}},
		{name: "negative calls", give: Run{Scenario: UAC302, Target: "127.0.0.1:5060", Calls: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.withDefaults().validate(); !errors.Is(err, ErrInvalidRun) {
				t.Errorf("validate() = %v, want %v", err, ErrInvalidRun)
			}
		})
	}
}
