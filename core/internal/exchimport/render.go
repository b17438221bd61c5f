package exchimport

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// tomlWriter writes the imported config as commented TOML text, in the
// order it is told, and records every key path it writes (named tables
// shown as *), so that a test can hold them against the shipped config.
type tomlWriter struct {
	b     strings.Builder
	table string // current table path, normalised
	keys  map[string]bool
}

func newTOMLWriter() *tomlWriter { return &tomlWriter{keys: map[string]bool{}} }

// comment writes each line of text as a comment; "" writes a blank line.
func (w *tomlWriter) comment(text string) {
	for _, l := range strings.Split(text, "\n") {
		if l == "" {
			w.b.WriteString("#\n")
			continue
		}
		w.b.WriteString("# " + l + "\n")
	}
}

func (w *tomlWriter) blank() { w.b.WriteString("\n") }

// header writes [path] (or [[path]] for an array of tables); named parts
// are quoted as TOML needs. norm is the path with names as *.
func (w *tomlWriter) header(array bool, norm string, parts ...string) {
	w.blank()
	w.b.WriteString(headerLine(array, parts) + "\n")
	w.table = norm
}

// commentedHeader writes "# [path]", for a table the operator completes.
func (w *tomlWriter) commentedHeader(norm string, parts ...string) {
	w.blank()
	w.b.WriteString("# " + headerLine(false, parts) + "\n")
	w.table = norm
}

func headerLine(array bool, parts []string) string {
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = tomlKey(p)
	}
	if array {
		return "[[" + strings.Join(keys, ".") + "]]"
	}
	return "[" + strings.Join(keys, ".") + "]"
}

// kv writes key = value with an optional trailing comment.
func (w *tomlWriter) kv(key string, value any, note string) {
	w.keys[w.table+"."+key] = true
	line := key + " = " + tomlValue(value)
	if note != "" {
		line = fmt.Sprintf("%-30s # %s", line, note)
	}
	w.b.WriteString(line + "\n")
}

// commentedKV writes "# key = value" for a setting that needs what the
// export cannot carry.
func (w *tomlWriter) commentedKV(key string, value any) {
	w.keys[w.table+"."+key] = true
	w.b.WriteString("# " + key + " = " + tomlValue(value) + "\n")
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return tomlString(k)
}

func tomlValue(v any) string {
	switch t := v.(type) {
	case string:
		return tomlString(t)
	case int:
		return strconv.Itoa(t)
	case bool:
		return strconv.FormatBool(t)
	case []string:
		q := make([]string, len(t))
		for i, s := range t {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("exchimport: no TOML form for %T", v)) // a programming error: every caller passes one of the above
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// commentText makes s safe inside a comment line: no line breaks, no
// control characters.
func commentText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
