package config

import (
	"errors"
	"strconv"
	"strings"
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
// that are unknown. When Err joins several errors (errors.Join), each of
// them gets a line of its own with the same "FILE:LINE: PATH: " in front,
// so no line of the text loses the key it is about.
func (e *FieldError) Error() string {
	prefix := e.prefix()
	if e.Err == nil {
		return string(prefix)
	}
	parts := joinedParts(e.Err)
	if parts == nil {
		return string(prefix) + e.Err.Error()
	}
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, (&FieldError{File: e.File, Line: e.Line, Path: e.Path, Err: p}).Error()...)
	}
	return string(b)
}

// prefix is the "FILE:LINE: PATH: " part of Error.
func (e *FieldError) prefix() []byte {
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
	return b
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }

// Problems lists the single problems in err, in order: errors joined with
// errors.Join are taken apart at any depth, also when a *FieldError wraps
// the join, whose parts then keep its File, Line and Path. Any other error
// is one problem, even one that fmt.Errorf made from several %w verbs
// ("invalid: load certificate: stat cert.pem: no such file or directory"):
// its text already says how its parts belong together, and splitting it
// would lose the key it is about. Printers of config errors use this to
// put each problem on its own line.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	// A *FieldError found under a wrapper that adds no text stands for err.
	var fe *FieldError
	if errors.As(err, &fe) && fe.Err != nil && fe.Error() == err.Error() {
		if parts := joinedParts(fe.Err); parts != nil {
			var out []error
			for _, p := range parts {
				out = append(out, Problems(&FieldError{File: fe.File, Line: fe.Line, Path: fe.Path, Err: p})...)
			}
			return out
		}
		return []error{err}
	}
	parts := joinedParts(err)
	if parts == nil {
		return []error{err}
	}
	var out []error
	for _, p := range parts {
		out = append(out, Problems(p)...)
	}
	return out
}

// joinedParts returns the errors that err joins when err is errors.Join's
// kind of error: one whose text is its parts' texts, one per line. An error
// from fmt.Errorf with several %w verbs also unwraps to a list but adds text
// of its own, so it is not a join; joinedParts returns nil for it.
func joinedParts(err error) []error {
	var u interface{ Unwrap() []error }
	if !errors.As(err, &u) {
		return nil
	}
	parts := u.Unwrap()
	if len(parts) == 0 {
		return nil
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		if p == nil {
			return nil
		}
		texts[i] = p.Error()
	}
	if strings.Join(texts, "\n") != err.Error() {
		return nil
	}
	return parts
}
