package config

import (
	"errors"
	"strconv"
)

// Sentinels that every *FieldError wraps, so callers can branch on the kind
// of problem with errors.Is.
var (
	// ErrSyntax means the file is not valid TOML.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey means the file names a key the schema does not have.
	ErrUnknownKey = errors.New("unknown key")
	// ErrRequired means a key that must be set is missing or empty.
	ErrRequired = errors.New("required")
	// ErrOutOfRange means a number or duration lies outside its allowed range.
	ErrOutOfRange = errors.New("out of range")
	// ErrInvalid means a value has the wrong type or form, or names a file
	// that cannot be used.
	ErrInvalid = errors.New("invalid")
	// ErrConflict means two settings contradict each other.
	ErrConflict = errors.New("conflict")
)

// FieldError ties one problem to the TOML key that caused it and, when the
// key appears in the file, to its line.
type FieldError struct {
	File string // config file name as given to Parse or Load; may be empty
	Line int    // 1-based line of the key; 0 when unknown
	Path string // key path, e.g. "sip.tcp_port" or "plugins.umrouter.sha256"
	Err  error  // wraps one of the sentinels above
}

// Error formats the problem as "FILE:LINE: PATH: ERR", leaving out the parts
// that are unknown.
func (e *FieldError) Error() string {
	var b []byte
	if e.File != "" {
		b = append(b, e.File...)
		if e.Line > 0 {
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(e.Line), 10)
		}
		b = append(b, ": "...)
	} else if e.Line > 0 {
		b = append(b, "line "...)
		b = strconv.AppendInt(b, int64(e.Line), 10)
		b = append(b, ": "...)
	}
	if e.Path != "" {
		b = append(b, e.Path...)
		b = append(b, ": "...)
	}
	if e.Err != nil {
		b = append(b, e.Err.Error()...)
	}
	return string(b)
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }
