package hep

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestAppendSpecBytes checks the encoding byte by byte against the HEP3
// specification's chunk layout: "HEP3", total length, then per chunk
// vendor 0, type, length including the 6-byte chunk header, value.
func TestAppendSpecBytes(t *testing.T) {
	p := Packet{
		Proto: UDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"), Dst: netip.MustParseAddrPort("198.51.100.2:5080"),
		Time: time.Unix(0x5f5e1000, 123456789), AgentID: 2001, AuthKey: []byte("pw"),
		CorrelationID: []byte("c1"), Payload: []byte("OPTIONS"),
	}
	got, err := Append(nil, &p)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"48455033", "007a", // HEP3, 122 bytes
		"0000 0001 0007 02",             // family IPv4
		"0000 0002 0007 11",             // protocol UDP (17)
		"0000 0007 0008 13c4",           // source port 5060
		"0000 0008 0008 13d8",           // destination port 5080
		"0000 0009 000a 5f5e1000",       // seconds
		"0000 000a 000a 0001e240",       // microseconds 123456
		"0000 000b 0007 01",             // protocol type SIP
		"0000 000c 000a 000007d1",       // capture agent id 2001
		"0000 0003 000a c0000201",       // source IPv4
		"0000 0004 000a c6336402",       // destination IPv4
		"0000 000e 0008 7077",           // auth key "pw"
		"0000 000f 000d 4f5054494f4e53", // payload "OPTIONS"
		"0000 0011 0008 6331",           // correlation id "c1"
	}, "")
	want = strings.ReplaceAll(want, " ", "")
	if hex.EncodeToString(got) != want {
		t.Errorf("Append =\n%x\nwant\n%s", got, want)
	}
	if len(got) != 0x7a {
		t.Errorf("len = %d, want the header's 122", len(got))
	}
}

func TestAppendDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		give     Packet
		wantSrc  string
		wantDst  string
		wantFam6 bool
	}{
		{name: "ipv4 tls", give: Packet{Proto: TLS, Src: netip.MustParseAddrPort("10.0.0.1:5061"),
			Dst: netip.MustParseAddrPort("10.0.0.2:40000"), Payload: []byte("SIP/2.0 200 OK\r\n\r\n")},
			wantSrc: "10.0.0.1:5061", wantDst: "10.0.0.2:40000"},
		{name: "ipv6 tcp", give: Packet{Proto: TCP, Src: netip.MustParseAddrPort("[2001:db8::1]:5060"),
			Dst: netip.MustParseAddrPort("[2001:db8::2]:5070"), Payload: []byte("BYE")},
			wantSrc: "[2001:db8::1]:5060", wantDst: "[2001:db8::2]:5070", wantFam6: true},
		{name: "mapped ipv4 is ipv4", give: Packet{Proto: UDP, Src: netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"),
			Dst: netip.MustParseAddrPort("127.0.0.2:2"), Payload: []byte("x")},
			wantSrc: "127.0.0.1:1", wantDst: "127.0.0.2:2"},
		{name: "mixed families go as ipv6", give: Packet{Proto: UDP, Src: netip.MustParseAddrPort("127.0.0.1:1"),
			Dst: netip.MustParseAddrPort("[::1]:2"), Payload: []byte("x")},
			wantSrc: "[::ffff:127.0.0.1]:1", wantDst: "[::1]:2", wantFam6: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Time = time.Unix(1700000000, 999999000)
			b, err := Append([]byte("prefix"), &tt.give)
			if err != nil {
				t.Fatal(err)
			}
			got, n, err := Decode(b[len("prefix"):])
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b)-len("prefix") {
				t.Errorf("Decode took %d bytes, want %d", n, len(b)-len("prefix"))
			}
			if got.Src.String() != tt.wantSrc || got.Dst.String() != tt.wantDst {
				t.Errorf("addresses %s -> %s, want %s -> %s", got.Src, got.Dst, tt.wantSrc, tt.wantDst)
			}
			if fam := b[len("prefix")+headerLen+chunkHdrLen]; (fam == familyIPv6) != tt.wantFam6 {
				t.Errorf("family chunk = %d", fam)
			}
			if got.Proto != tt.give.Proto || !bytes.Equal(got.Payload, tt.give.Payload) || !got.Time.Equal(tt.give.Time) {
				t.Errorf("Decode = %+v, want %+v", got, tt.give)
			}
		})
	}
}

func TestAppendTooLarge(t *testing.T) {
	p := Packet{Proto: UDP, Src: netip.MustParseAddrPort("127.0.0.1:1"), Dst: netip.MustParseAddrPort("127.0.0.1:2"),
		Payload: make([]byte, MaxPacket)}
	if _, err := Append(nil, &p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append = %v, want ErrTooLarge", err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	good, err := Append(nil, &Packet{Proto: UDP, Src: netip.MustParseAddrPort("127.0.0.1:1"),
		Dst: netip.MustParseAddrPort("127.0.0.1:2"), Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give []byte
	}{
		{name: "empty", give: nil},
		{name: "hep2", give: []byte{2, 16, 2, 17, 0, 0}},
		{name: "length past the end", give: append([]byte("HEP3\xff\xff"), good[6:]...)},
		{name: "truncated", give: good[:len(good)-3]},
		{name: "chunk length below its header", give: []byte("HEP3\x00\x0c\x00\x00\x00\x0f\x00\x02")},
		{name: "no payload", give: []byte("HEP3\x00\x0d\x00\x00\x00\x01\x00\x07\x02")},
		{name: "bad uint8 size", give: []byte("HEP3\x00\x0e\x00\x00\x00\x01\x00\x08\x02\x02")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Decode(tt.give); !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode = %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Append(nil, &Packet{Proto: UDP, Src: netip.MustParseAddrPort("127.0.0.1:1"),
		Dst: netip.MustParseAddrPort("[::1]:2"), AuthKey: []byte("k"), CorrelationID: []byte("c"), Payload: []byte("x")})
	f.Add(good)
	f.Add([]byte("HEP3\x00\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := Decode(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("took %d of %d bytes", n, len(b))
		}
		// What decodes encodes again, and decodes to the same.
		re, err := Append(nil, &p)
		if err != nil {
			return // e.g. foreign chunks made room that the payload now lacks
		}
		q, _, err := Decode(re)
		if err != nil || !bytes.Equal(q.Payload, p.Payload) || q.Src.Port() != p.Src.Port() || q.Proto != p.Proto {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", p, q, err)
		}
	})
}

func TestNextMessage(t *testing.T) {
	inv := "INVITE sip:a@b SIP/2.0\r\nCall-ID: x1\r\nContent-Length: 4\r\n\r\nv=0\n"
	ok := "SIP/2.0 200 OK\r\ni: y2\r\nl:0\r\n\r\n"
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "two back to back", give: inv + ok, want: []string{inv, ok}},
		{name: "keep-alives between", give: "\r\n\r\n" + ok + "\r\n" + inv, want: []string{ok, inv}},
		{name: "only crlf", give: "\r\n\r\n", want: nil},
		{name: "no content-length is whole", give: "BYE sip:x SIP/2.0\r\n\r\nrest", want: []string{"BYE sip:x SIP/2.0\r\n\r\nrest"}},
		{name: "body past the end is whole", give: "BYE sip:x SIP/2.0\r\nContent-Length: 99\r\n\r\nab", want: []string{"BYE sip:x SIP/2.0\r\nContent-Length: 99\r\n\r\nab"}},
		{name: "no header end", give: "garbage", want: []string{"garbage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for rest := []byte(tt.give); len(rest) > 0; {
				var msg []byte
				msg, rest = nextMessage(rest)
				if len(msg) == 0 {
					break
				}
				got = append(got, string(msg))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("split = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCallID(t *testing.T) {
	tests := []struct{ name, give, want string }{
		{name: "long form", give: "OPTIONS sip:x SIP/2.0\r\nVia: a\r\nCall-ID:  abc@h \r\n\r\n", want: "abc@h"},
		{name: "compact and case", give: "SIP/2.0 200 OK\r\nI: q\r\n\r\n", want: "q"},
		{name: "not in the body", give: "BYE sip:x SIP/2.0\r\nl: 11\r\n\r\nCall-ID: no", want: ""},
		{name: "none", give: "BYE sip:x SIP/2.0\r\n\r\n", want: ""},
		{name: "no header end", give: "BYE sip:x SIP/2.0\r\nCall-ID: cut\r\n", want: "cut"},
		{name: "start line only", give: "x", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(callID([]byte(tt.give))); got != tt.want {
				t.Errorf("callID = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzNextMessage: a message is the input after its leading CRLFs, cut
// once; the rest follows it at once. So splitting never loses, reorders or
// invents a byte but the keep-alives, and always advances.
func FuzzNextMessage(f *testing.F) {
	f.Add([]byte("INVITE sip:a SIP/2.0\r\nl: 3\r\n\r\nabc\r\n\r\nSIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("BYE x SIP/2.0\r\nContent-Length: 999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for rest := b; len(rest) > 0; {
			msg, next := nextMessage(rest)
			trimmed := bytes.TrimLeft(rest, "\r\n")
			if !bytes.HasPrefix(trimmed, msg) || !bytes.Equal(next, trimmed[len(msg):]) {
				t.Fatalf("split %q into %q and %q", rest, msg, next)
			}
			if len(msg) == 0 {
				if len(next) != 0 {
					t.Fatalf("no progress on %q", rest)
				}
				break
			}
			_ = callID(msg)
			rest = next
		}
	})
}
