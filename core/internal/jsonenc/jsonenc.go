// Package jsonenc appends JSON values byte for byte as encoding/json
// writes them, without reflection: the call detail records and the media
// statistics in them are written thousands of times a second, and
// encoding/json's reflection over their structs was most of that cost.
package jsonenc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrNotJSON is a value JSON cannot carry (encoding/json refuses it too).
var ErrNotJSON = errors.New("value not encodable as JSON")

// Time appends t as time.Time's MarshalJSON does.
func Time(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("%w: time %v outside of years 0-9999", ErrNotJSON, t)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// Float appends f as encoding/json writes a float64.
func Float(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, fmt.Errorf("%w: number %v", ErrNotJSON, f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9, as encoding/json
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// Uint appends u as encoding/json writes an unsigned integer.
func Uint(b []byte, u uint64) []byte { return strconv.AppendUint(b, u, 10) }

// Int appends i as encoding/json writes a signed integer.
func Int(b []byte, i int64) []byte { return strconv.AppendInt(b, i, 10) }

// Bool appends v as encoding/json writes a bool.
func Bool(b []byte, v bool) []byte { return strconv.AppendBool(b, v) }

// String appends s quoted as encoding/json quotes it by default (HTML
// characters escaped too): call ids, users and reasons come from peers.
func String(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Appender is a value that appends its own JSON, the bytes
// encoding/json.Marshal gives for it.
type Appender interface {
	AppendJSON(b []byte) ([]byte, error)
}
