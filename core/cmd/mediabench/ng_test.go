package main

import (
	"bytes"
	"reflect"
	"testing"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{"command": "offer", "sdp": "v=0\r\n", "replace": []any{"origin", "session-connection"}, "n": 42}
	var buf bytes.Buffer
	bencode(&buf, in)
	if want := "d7:command5:offer1:ni42e7:replacel6:origin18:session-connectione3:sdp5:v=0\r\ne"; buf.String() != want {
		t.Fatalf("bencode = %q, want %q", buf.String(), want)
	}
	out, rest, err := bdecode(buf.Bytes())
	if err != nil || len(rest) != 0 || !reflect.DeepEqual(out, in) {
		t.Fatalf("bdecode = %v, %q, %v", out, rest, err)
	}
}

func TestBdecodeRejectsMalformed(t *testing.T) {
	for _, b := range []string{"", "d", "l", "i12", "5:abc", "d3:keyi1e", "di1ei2ee", "x", "-1:"} {
		if _, _, err := bdecode([]byte(b)); err == nil {
			t.Errorf("bdecode(%q) = nil error", b)
		}
	}
}
