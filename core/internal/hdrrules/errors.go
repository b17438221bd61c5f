package hdrrules

import (
	"errors"
	"strconv"
)

var (
	// ErrInvalid means a rule field has a value it cannot have.
	ErrInvalid = errors.New("invalid")
	// ErrOwned means a rule acts on a header the B2BUA writes itself.
	ErrOwned = errors.New("header owned by the B2BUA")
	// ErrBound means a rule or a list of rules is over a bound.
	ErrBound = errors.New("over bound")
)

// RuleError is a problem of one rule: its index in the list and the field.
type RuleError struct {
	Index int
	Field string // "direction", "header", "match", …; "" = the list
	Err   error
}

func (e *RuleError) Error() string {
	s := "rule " + strconv.Itoa(e.Index)
	if e.Field != "" {
		s += " " + e.Field
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the problem.
func (e *RuleError) Unwrap() error { return e.Err }
