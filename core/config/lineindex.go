package config

import (
	"strconv"
	"sync"
	"unicode/utf8"
)

// lineIndex maps a key path to the 1-based line that first defines it.
// BurntSushi/toml keeps key positions private, so we scan the text ourselves.
//
// Path syntax: keys joined by ".", a key that is not bare written as a Go
// quoted string ("a.b"), and elements of arrays (of tables or of values)
// written as key[n]. Table headers map to their own line; so do the implicit
// parent tables they create, unless defined earlier.
type lineIndex map[string]int

// text is the bytes a Config was parsed from and their line index, built
// when a line is first asked for and released once parsing is done: with
// a 10,000-mailbox directory the index is some 3 MB that a running daemon
// needs only to report a problem.
type text struct {
	mu    sync.Mutex
	data  []byte
	index lineIndex
}

func (t *text) lines() lineIndex {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.index == nil {
		t.index = indexLines(t.data)
	}
	return t.index
}

func (t *text) release() {
	t.mu.Lock()
	t.index = nil
	t.mu.Unlock()
}

// index returns c's line index; empty for a config not parsed from text.
func (c *Config) index() lineIndex {
	if c.text == nil {
		return nil
	}
	return c.text.lines()
}

// Limits that keep the scanner linear on hostile input. Beyond them we stop
// indexing the construct but keep scanning, so Line simply returns 0.
const (
	maxKeyParts = 64 // dotted key components per key
	maxDepth    = 32 // nesting of arrays and inline tables
)

// indexLines scans TOML text and returns its line index. It never fails: on
// text that is not valid TOML it indexes what it can recognise.
func indexLines(data []byte) lineIndex {
	s := &lineScanner{data: data, line: 1, idx: lineIndex{}, aot: map[string]int{}}
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		s.pos = 3 // UTF-8 byte order mark
	}
	s.run()
	return s.idx
}

type lineScanner struct {
	data  []byte
	pos   int
	line  int
	idx   lineIndex
	table string         // path of the current [table] or [[table]] element
	aot   map[string]int // path of an array of tables → elements seen
}

func (s *lineScanner) eof() bool  { return s.pos >= len(s.data) }
func (s *lineScanner) peek() byte { return s.data[s.pos] }

func (s *lineScanner) run() {
	for !s.eof() {
		s.skipBlank()
		if s.eof() {
			return
		}
		switch s.peek() {
		case '\n':
			s.pos++
			s.line++
		case '#':
			s.skipLine()
		case '[':
			s.header()
			s.skipLine()
		default:
			s.keyValue(s.table, 0)
			s.skipLine()
		}
	}
}

// set records path at line unless an earlier line already defined it.
func (s *lineScanner) set(path string, line int) {
	if _, ok := s.idx[path]; !ok {
		s.idx[path] = line
	}
}

// skipBlank skips spaces, tabs and carriage returns on the current line.
func (s *lineScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r':
			s.pos++
		default:
			return
		}
	}
}

// skipLine moves to the newline that ends the current line (not past it).
func (s *lineScanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

// skipSpace skips blanks, newlines and comments, as allowed inside arrays
// and (TOML 1.1) inline tables.
func (s *lineScanner) skipSpace() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			s.pos++
			s.line++
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// header handles [a.b] and [[a.b]].
func (s *lineScanner) header() {
	line := s.line
	s.pos++ // '['
	array := !s.eof() && s.peek() == '['
	if array {
		s.pos++
	}
	parts, ok := s.key()
	if !ok || s.eof() || s.peek() != ']' {
		return
	}
	path := ""
	for i, p := range parts {
		path = joinKey(path, p)
		if array && i == len(parts)-1 {
			n := s.aot[path]
			s.aot[path] = n + 1
			s.set(path, line)
			path = indexKey(path, n)
		} else if n, ok := s.aot[path]; ok {
			path = indexKey(path, n-1) // a header below [[x]] extends its last element
		}
		s.set(path, line)
	}
	s.table = path
}

// keyValue handles "key = value" with the key relative to prefix. It
// reports whether it recognised a key and an equals sign.
func (s *lineScanner) keyValue(prefix string, depth int) bool {
	line := s.line
	parts, ok := s.key()
	if !ok {
		return false
	}
	s.skipBlank()
	if s.eof() || s.peek() != '=' {
		return false
	}
	s.pos++
	path := prefix
	for _, p := range parts {
		path = joinKey(path, p)
		s.set(path, line)
	}
	s.value(path, depth)
	return true
}

// key reads a dotted key of bare and quoted parts.
func (s *lineScanner) key() ([]string, bool) {
	var parts []string
	for {
		s.skipBlank()
		if s.eof() {
			return nil, false
		}
		var part string
		switch c := s.peek(); {
		case c == '"':
			p, ok := s.basicString()
			if !ok {
				return nil, false
			}
			part = p
		case c == '\'':
			p, ok := s.literalString()
			if !ok {
				return nil, false
			}
			part = p
		case isBareKeyByte(c):
			start := s.pos
			for !s.eof() && isBareKeyByte(s.peek()) {
				s.pos++
			}
			part = string(s.data[start:s.pos])
		default:
			return nil, false
		}
		if len(parts) == maxKeyParts {
			return nil, false
		}
		parts = append(parts, part)
		s.skipBlank()
		if s.eof() || s.peek() != '.' {
			return parts, true
		}
		s.pos++
	}
}

// value skips one value, indexing the elements of arrays and the keys of
// inline tables below path.
func (s *lineScanner) value(path string, depth int) {
	s.skipBlank()
	if s.eof() {
		return
	}
	switch s.peek() {
	case '"':
		if s.hasPrefix(`"""`) {
			s.multiLineString('"')
		} else {
			s.basicString()
		}
	case '\'':
		if s.hasPrefix(`'''`) {
			s.multiLineString('\'')
		} else {
			s.literalString()
		}
	case '[':
		if depth >= maxDepth {
			s.skipLine()
			return
		}
		s.array(path, depth+1)
	case '{':
		if depth >= maxDepth {
			s.skipLine()
			return
		}
		s.inlineTable(path, depth+1)
	default: // number, boolean, date-time: up to a delimiter
		for !s.eof() {
			switch s.peek() {
			case ',', ']', '}', '#', '\n', ' ', '\t', '\r':
				return
			}
			s.pos++
		}
	}
}

func (s *lineScanner) array(path string, depth int) {
	s.pos++ // '['
	for n := 0; ; {
		s.skipSpace()
		if s.eof() {
			return
		}
		switch s.peek() {
		case ']':
			s.pos++
			return
		case ',':
			s.pos++
			continue
		}
		elem := indexKey(path, n)
		n++
		s.set(elem, s.line)
		start := s.pos
		s.value(elem, depth)
		if s.pos == start {
			s.pos++ // not a value: step over it so we always progress
		}
	}
}

func (s *lineScanner) inlineTable(path string, depth int) {
	s.pos++ // '{'
	for {
		s.skipSpace()
		if s.eof() {
			return
		}
		switch s.peek() {
		case '}':
			s.pos++
			return
		case ',':
			s.pos++
			continue
		}
		start := s.pos
		if !s.keyValue(path, depth) && s.pos == start {
			s.pos++
		}
	}
}

func (s *lineScanner) hasPrefix(p string) bool {
	return len(s.data)-s.pos >= len(p) && string(s.data[s.pos:s.pos+len(p)]) == p
}

// basicString reads a one-line "..." string and returns its unescaped text.
func (s *lineScanner) basicString() (string, bool) {
	s.pos++ // '"'
	var b []byte
	for !s.eof() {
		c := s.peek()
		switch c {
		case '"':
			s.pos++
			return string(b), true
		case '\n':
			return string(b), false
		case '\\':
			b = s.escape(b)
		default:
			b = append(b, c)
			s.pos++
		}
	}
	return string(b), false
}

// escape decodes the escape sequence at s.pos (a backslash) onto b.
func (s *lineScanner) escape(b []byte) []byte {
	s.pos++ // '\\'
	if s.eof() || s.peek() == '\n' {
		return b
	}
	c := s.peek()
	s.pos++
	switch c {
	case 'b':
		return append(b, '\b')
	case 't':
		return append(b, '\t')
	case 'n':
		return append(b, '\n')
	case 'f':
		return append(b, '\f')
	case 'r':
		return append(b, '\r')
	case 'e':
		return append(b, 0x1b)
	case 'x':
		return s.hexEscape(b, 2)
	case 'u':
		return s.hexEscape(b, 4)
	case 'U':
		return s.hexEscape(b, 8)
	default: // '"', '\\' and invalid escapes (the TOML parser rejects those)
		return append(b, c)
	}
}

func (s *lineScanner) hexEscape(b []byte, n int) []byte {
	if len(s.data)-s.pos < n {
		return b
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+n]), 16, 32)
	if err != nil {
		return b
	}
	s.pos += n
	if !utf8.ValidRune(rune(v)) {
		return b
	}
	return utf8.AppendRune(b, rune(v))
}

// literalString reads a one-line '...' string.
func (s *lineScanner) literalString() (string, bool) {
	s.pos++ // '\''
	start := s.pos
	for !s.eof() {
		switch s.peek() {
		case '\'':
			v := string(s.data[start:s.pos])
			s.pos++
			return v, true
		case '\n':
			return string(s.data[start:s.pos]), false
		}
		s.pos++
	}
	return string(s.data[start:]), false
}

// multiLineString skips a """...""" or ”'...”' string, counting its lines.
func (s *lineScanner) multiLineString(q byte) {
	s.pos += 3
	for !s.eof() {
		c := s.peek()
		switch {
		case c == '\n':
			s.line++
			s.pos++
		case c == '\\' && q == '"':
			s.pos++
			if !s.eof() {
				if s.peek() == '\n' {
					s.line++
				}
				s.pos++
			}
		case c == q && s.hasPrefix(string([]byte{q, q, q})):
			s.pos += 3
			// Up to two more quotes belong to the content: """a""""" ends the same way.
			for i := 0; i < 2 && !s.eof() && s.peek() == q; i++ {
				s.pos++
			}
			return
		default:
			s.pos++
		}
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoteKey writes one key of a path: bare when it can be, quoted otherwise.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyByte(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

// joinKey appends key k to path.
func joinKey(path, k string) string {
	if path == "" {
		return quoteKey(k)
	}
	return path + "." + quoteKey(k)
}

// indexKey appends an array index to path.
func indexKey(path string, n int) string {
	return path + "[" + strconv.Itoa(n) + "]"
}

// parents returns the enclosing paths of path, nearest first: for
// `a.b[2]."c.d"` they are `a.b[2]`, `a.b`, `a`.
func parents(path string) []string {
	var cuts []int
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '"':
			for i++; i < len(path) && path[i] != '"'; i++ {
				if path[i] == '\\' {
					i++
				}
			}
		case '.', '[':
			if i > 0 {
				cuts = append(cuts, i)
			}
		}
	}
	out := make([]string, 0, len(cuts))
	for i := len(cuts) - 1; i >= 0; i-- {
		p := path[:cuts[i]]
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	return out
}

// nearest returns the line of path or, failing that, of its nearest
// enclosing path that the file defines; 0 when none is known.
func (ix lineIndex) nearest(path string) int {
	if n, ok := ix[path]; ok {
		return n
	}
	for _, p := range parents(path) {
		if n, ok := ix[p]; ok {
			return n
		}
	}
	return 0
}
