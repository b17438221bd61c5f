package sipload

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Line is one call: what the INVITE says and the answer it must get.
type Line struct {
	Caller   string // From and Contact user
	Called   string // Request-URI and To user
	Reason   string // Diversion reason; "" = no Diversion header
	Diverted string // Diversion user
	Code     int    // expected final status
	Contact  string // expected Contact user@host:port of a 3xx; "" = not checked
}

// ReadCSV reads a SIPp injection file in the mix's format (the first line
// names the order, SEQUENTIAL; then caller;called;reason;diverted;code;contact
// with contact "-" for none), as sipptest.WriteMix writes it. The fields
// share one string: a million lines cost no allocation each.
func ReadCSV(path string) ([]Line, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read injection file: %w", err)
	}
	return ParseCSV(string(b), path)
}

// ParseCSV parses the content of an injection file; name is for errors.
func ParseCSV(data, name string) ([]Line, error) {
	first, rest, _ := strings.Cut(data, "\n")
	if order := strings.TrimSpace(first); order != "SEQUENTIAL" {
		return nil, fmt.Errorf("%w: %s:1: order %q, want SEQUENTIAL", ErrBadCSV, name, order)
	}
	lines := make([]Line, 0, strings.Count(rest, "\n")+1)
	for n := 2; rest != ""; n++ {
		var row string
		row, rest, _ = strings.Cut(rest, "\n")
		row = strings.TrimSuffix(row, "\r")
		if row == "" || row[0] == '#' {
			continue
		}
		var f [6]string
		for i := range 5 {
			var ok bool
			if f[i], row, ok = strings.Cut(row, ";"); !ok {
				return nil, fmt.Errorf("%w: %s:%d: %d fields, want 6", ErrBadCSV, name, n, i+1)
			}
		}
		f[5] = row
		code, err := strconv.Atoi(f[4])
		if err != nil || code < 100 || code > 699 {
			return nil, fmt.Errorf("%w: %s:%d: status %q is not 100..699", ErrBadCSV, name, n, f[4])
		}
		if f[0] == "" || f[1] == "" {
			return nil, fmt.Errorf("%w: %s:%d: empty caller or called", ErrBadCSV, name, n)
		}
		if (f[2] == "") != (f[3] == "") {
			return nil, fmt.Errorf("%w: %s:%d: Diversion reason %q with user %q, want both or neither", ErrBadCSV, name, n, f[2], f[3])
		}
		if f[5] == "-" {
			f[5] = ""
		}
		lines = append(lines, Line{Caller: f[0], Called: f[1], Reason: f[2], Diverted: f[3], Code: code, Contact: f[5]})
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: %s: no calls", ErrBadCSV, name)
	}
	return lines, nil
}
