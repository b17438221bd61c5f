package b2bua

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
)

// The top Via of a response is written straight into the message; it must
// be what sipheader.Received makes of it, byte for byte, for every case
// of received and rport.
func TestWriteReceivedIsReceived(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.10:5070")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:5070")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.10]:5070")
	cases := []struct {
		via string
		src netip.AddrPort
	}{
		{"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKa", v4},                       // as is
		{"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKa;rport", v4},                 // rport filled
		{"SIP/2.0/UDP 192.0.2.10;rport;branch=z9hG4bKa", v4},                      // rport in the middle, no port
		{"SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKa", v4},                         // received added
		{"SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKa;rport", mapped},               // both, mapped source
		{"SIP/2.0/UDP 10.1.1.1:5060;received=10.9.9.9;branch=z9hG4bKa;rport", v4}, // received replaced in place
		{"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKa;rport=1234", v4},            // rport with a value: left
		{"SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKa;rport=1234", v4},              // … and received added
		{"SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKa;rport", v6},              // IPv6 host in brackets
		{"SIP/2.0/UDP 2001:db8::7;branch=z9hG4bKa", v6},                           // bare IPv6 sent-by
		{"SIP/2.0/UDP host.example.net:5060;branch=z9hG4bKa;maddr=\"x y\"", v4},   // quoted parameter
		{"SIP/2.0/UDP 10.1.1.1:5060", v4},                                         // no parameters
	}
	for _, c := range cases {
		req := parse(t, "OPTIONS sip:a@192.0.2.1 SIP/2.0\nVia: "+c.via+"\nFrom: <sip:b@x>;tag=1\nTo: <sip:a@y>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
		v := req.(*sip.Request).Via()
		want := sipheader.Received(v, c.src).String()
		var w wire
		writeReceived(&w, v, c.src)
		if got := string(w.end(nil)); got != want+"Content-Length: 0\r\n\r\n" {
			t.Errorf("%s from %s:\ngot  %q\nwant %q", c.via, c.src, got, want)
		}
	}
}

// A response copies the request's Vias in order, From, To with our tag
// when it had none, Call-ID and CSeq.
func TestResponseHeaders(t *testing.T) {
	req := parse(t, "BYE sip:a@192.0.2.1 SIP/2.0\n"+
		"Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1;rport\n"+
		"v: SIP/2.0/UDP 10.2.2.2:5060;branch=z9hG4bK2\n"+
		"Diversion: <sip:9@x>\n"+
		"From: \"A b\" <sip:2001@10.1.1.1>;tag=f1\n"+
		"To: <sip:1001@192.0.2.1>\n"+
		"Call-ID: abc@10.1.1.1\n"+
		"CSeq: 7 BYE\n"+
		"Content-Length: 0\n\n").(*sip.Request)
	got := string(response(req, netip.MustParseAddrPort("192.0.2.10:5999"), "t9", 200, "OK", []string{"X: y"}, nil))
	want := "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1;rport=5999;received=192.0.2.10\r\n" +
		"Via: SIP/2.0/UDP 10.2.2.2:5060;branch=z9hG4bK2\r\n" +
		"From: \"A b\" <sip:2001@10.1.1.1>;tag=f1\r\n" +
		"To: <sip:1001@192.0.2.1>;tag=t9\r\n" +
		"Call-ID: abc@10.1.1.1\r\n" +
		"CSeq: 7 BYE\r\n" +
		"X: y\r\n" +
		"Content-Length: 0\r\n\r\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// leaks finds a secret as a token of its own, not inside a longer one: a
// random hex tag or branch of ours holds "be1" once in a few hundred
// (TestReferRewrite failed so, now and then).
func TestLeaksMatchesTokens(t *testing.T) {
	msg := func(tag string) sip.Message {
		return parse(t, "BYE sip:a@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK0abe1f\n"+
			"From: <sip:b@192.0.2.2>;tag="+tag+"\nTo: <sip:a@192.0.2.1>\nCall-ID: x\nCSeq: 1 BYE\nContent-Length: 0\n\n")
	}
	if got := leaks(msg("77be1c0"), "be1"); len(got) > 0 {
		t.Errorf("random tokens holding be1 found as its leak: %q", got)
	}
	if got := leaks(msg("be1"), "be1"); len(got) != 1 {
		t.Errorf("the tag be1 copied: leaks found %q", got)
	}
	if got := leaks(msg("x"), "192.0.2.2"); len(got) != 1 {
		t.Errorf("an address copied: leaks found %q", got)
	}
}
