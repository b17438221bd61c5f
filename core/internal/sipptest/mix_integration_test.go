//go:build integration

package sipptest

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// mixRouter answers a mix INVITE from what it carries (From, Request-URI,
// Diversion) with umrouter's decision over the mix directory; wrong, when
// not nil, may change the answer for a class of calls.
func mixRouter(t *testing.T, d mixDirectory, wrong func(MixClass, int, string) (int, string), classOf map[string]MixClass) answerFunc {
	t.Helper()
	return func(req *sip.Request) (int, string, map[string]string) {
		reason, diverted := "", ""
		if h := req.GetHeader("Diversion"); h != nil {
			var uri sip.Uri
			v := h.Value()
			addr, params, _ := strings.Cut(strings.TrimPrefix(v, "<"), ">;")
			if err := sip.ParseUri(addr, &uri); err == nil {
				diverted = uri.User
			}
			for _, p := range strings.Split(params, ";") {
				if r, ok := strings.CutPrefix(p, "reason="); ok {
					reason = r
				}
			}
		}
		code, contact := d.answer(req.From().Address.User, req.Recipient.User, reason, diverted)
		if wrong != nil {
			code, contact = wrong(classOf[req.From().Address.User], code, contact)
		}
		if code != 302 {
			return code, "Not Found", nil
		}
		return 302, "Moved Temporarily", map[string]string{"Contact": "<sip:" + contact + ";transport=tcp>"}
	}
}

// UACMix passes every call a server answers as the line expects, and
// fails exactly the calls whose status or Contact differ.
func TestExecMix(t *testing.T) {
	f := writeTestMix(t, Mix{Seed: 3, Mailboxes: 1000, Calls: 400})
	d := readMixSettings(t, f.Settings, "umrouter")
	classOf := map[string]MixClass{}
	perClass := map[MixClass]int{}
	codes := map[int]int{}
	for _, c := range f.Calls {
		classOf[c.Caller] = c.Class
		perClass[c.Class]++
		codes[c.Code]++
	}
	otherHost := func(contact string) string {
		if strings.Contains(contact, "@127.0.0.1:") {
			return strings.Replace(contact, "@127.0.0.1:", "@127.0.0.2:", 1)
		}
		return strings.Replace(contact, "@127.0.0.2:", "@127.0.0.1:", 1)
	}
	tests := []struct {
		name       string
		transport  string
		wrong      func(MixClass, int, string) (int, string)
		wantFailed int
	}{
		{name: "right answers over udp", transport: "udp"},
		{name: "right answers over tcp", transport: "tcp"},
		{
			name: "wrong pool for diverted calls to the mailbox", transport: "udp",
			wrong: func(c MixClass, code int, contact string) (int, string) {
				if c == MixDivertedMailbox {
					return code, otherHost(contact)
				}
				return code, contact
			},
			wantFailed: perClass[MixDivertedMailbox],
		},
		{
			name: "bad callers redirected, unknown numbers refused with 403", transport: "tcp",
			wrong: func(c MixClass, code int, contact string) (int, string) {
				switch c {
				case MixBadCaller:
					return 302, "80000@127.0.0.1:5062"
				case MixUnknownDirect:
					return 403, ""
				}
				return code, contact
			},
			wantFailed: perClass[MixBadCaller] + perClass[MixUnknownDirect],
		},
		{
			name: "contact user is the diverted number, not the request-uri", transport: "udp",
			wrong: func(c MixClass, code int, contact string) (int, string) {
				if c == MixDivertedPilot {
					return code, strings.Replace(contact, MixPilot+"@", "10000@", 1)
				}
				return code, contact
			},
			wantFailed: perClass[MixDivertedPilot],
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResponder(mixRouter(t, d, tt.wrong, classOf))
			run := serve(t, r, tt.transport)
			run.Scenario, run.Inject, run.Calls, run.Rate = UACMix, f.CSV, len(f.Calls), 400

			res := execRun(t, run)

			if res.Created != run.Calls || res.Failed != tt.wantFailed || res.Successful != run.Calls-tt.wantFailed {
				t.Errorf("result %s, want %d failed of %d\nerrors: %s", res, tt.wantFailed, run.Calls, truncate(res.Errors, 2000))
			}
			if tt.wrong == nil && (res.Codes[302] != codes[302] || res.Codes[404] != codes[404]) {
				t.Errorf("Codes = %v, want %d × 302 and %d × 404", res.Codes, codes[302], codes[404])
			}
			if invites, acks, stray := r.counts(); invites != run.Calls || acks != run.Calls || stray != 0 {
				t.Errorf("server saw %d INVITE branches, %d ACKs on an INVITE branch, %d on another; want %d, %d, 0",
					invites, acks, stray, run.Calls, run.Calls)
			}
		})
	}
	if perClass[MixBadCaller] == 0 || perClass[MixUnknownDirect] == 0 {
		t.Fatalf("classes %v: the mix lacks the classes the test breaks", perClass)
	}
}
