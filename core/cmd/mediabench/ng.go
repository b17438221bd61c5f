package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// The ng control protocol of rtpengine: "<cookie> <bencoded dict>" over
// UDP, answered the same way. No bencode module is served here, and the
// subset needed (strings, integers, lists, dictionaries) is small.

func bencode(buf *bytes.Buffer, v any) {
	switch v := v.(type) {
	case string:
		buf.WriteString(strconv.Itoa(len(v)) + ":" + v)
	case []byte:
		buf.WriteString(strconv.Itoa(len(v)) + ":")
		buf.Write(v)
	case int:
		buf.WriteString("i" + strconv.Itoa(v) + "e")
	case []any:
		buf.WriteByte('l')
		for _, e := range v {
			bencode(buf, e)
		}
		buf.WriteByte('e')
	case []string:
		buf.WriteByte('l')
		for _, e := range v {
			bencode(buf, e)
		}
		buf.WriteByte('e')
	case map[string]any:
		buf.WriteByte('d')
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			bencode(buf, k)
			bencode(buf, v[k])
		}
		buf.WriteByte('e')
	default:
		panic(fmt.Sprintf("bencode: %T", v))
	}
}

var errBencode = errors.New("bad bencode")

// bdecode decodes one value from b and returns the rest.
func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errBencode
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[1:end]))
		return n, b[end+1:], err
	case c == 'l':
		var out []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			out, b = append(out, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return out, b[1:], nil
	case c == 'd':
		out := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			ks, ok := k.(string)
			if err != nil || !ok {
				return nil, nil, errBencode
			}
			v, rest, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			out[ks], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errBencode
		}
		return out, b[1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errBencode
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || colon+1+n > len(b) {
			return nil, nil, errBencode
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	}
	return nil, nil, errBencode
}

// ngClient sends ng commands and waits for their answers.
type ngClient struct{ c *net.UDPConn }

func dialNG(addr string) (*ngClient, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, err
	}
	return &ngClient{c: c}, nil
}

func (n *ngClient) call(req map[string]any) (map[string]any, error) {
	cookie := make([]byte, 6)
	rand.Read(cookie)
	ck := hex.EncodeToString(cookie)
	var buf bytes.Buffer
	buf.WriteString(ck + " ")
	bencode(&buf, req)
	for try := 0; try < 3; try++ {
		if _, err := n.c.Write(buf.Bytes()); err != nil {
			return nil, err
		}
		resp := make([]byte, 65536)
		_ = n.c.SetReadDeadline(time.Now().Add(2 * time.Second)) // a UDP socket: cannot fail
		for {
			m, err := n.c.Read(resp)
			if err != nil {
				break // retry
			}
			got, body, ok := bytes.Cut(resp[:m], []byte(" "))
			if !ok || string(got) != ck {
				continue // a late answer to an earlier try
			}
			v, _, err := bdecode(body)
			d, isDict := v.(map[string]any)
			if err != nil || !isDict {
				return nil, fmt.Errorf("ng %s: bad answer %q", req["command"], body)
			}
			if d["result"] != "ok" {
				return nil, fmt.Errorf("ng %s: %v: %v", req["command"], d["result"], d["error-reason"])
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("ng %s: no answer", req["command"])
}
