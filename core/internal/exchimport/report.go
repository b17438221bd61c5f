package exchimport

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Exit statuses of an import (docs/exchange-import.md, issue 8).
const (
	ExitComplete = 0 // everything imported that umedge has
	ExitWarnings = 1 // a usable config, with warnings to read
	ExitRefused  = 2 // no config: an input was refused or the export contradicts itself
)

// Report says what the import read, what each object became, and what
// the operator must still do. It is written as JSON with --report and as
// text on standard error.
type Report struct {
	Inputs      []Input        `json:"inputs"`
	Objects     []ObjectReport `json:"objects"`
	Warnings    []Warning      `json:"warnings"`
	Errors      []Warning      `json:"errors"`
	NotMigrated []Loss         `json:"not_migrated"`
	ExitStatus  int            `json:"exit_status"`
}

// ObjectReport is one Exchange object and the config keys it became.
type ObjectReport struct {
	Kind     string   `json:"kind"`
	Identity string   `json:"identity"`
	Source   string   `json:"source"`
	Result   string   `json:"result"` // imported | comments | skipped
	Became   []string `json:"became"`
}

// The results of one object.
const (
	resultImported = "imported" // became config keys
	resultComments = "comments" // umedge has no such setting yet: kept as comments in the config
	resultSkipped  = "skipped"  // not in the config; a warning says why
)

// Loss is a kind of data that cannot be migrated, the objects it
// concerns, and what the operator does about it.
type Loss struct {
	What     string   `json:"what"`
	Objects  []string `json:"objects"`
	NextStep string   `json:"next_step"`
}

// WriteJSON writes the report as indented JSON; empty lists are [].
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	out.Inputs, out.Objects, out.NotMigrated = orEmpty(out.Inputs), orEmpty(out.Objects), orEmpty(out.NotMigrated)
	out.Warnings, out.Errors = orEmpty(out.Warnings), orEmpty(out.Errors)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&out)
}

func orEmpty[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// maxListed is how many objects of one loss the text report names.
const maxListed = 5

// WriteText writes the report for a person: a summary per kind, every
// error and warning, and what cannot be migrated with the next steps.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, in := range r.Inputs {
		fmt.Fprintf(&b, "read %s: %s, %s, %d UM objects\n", in.Name, in.Format, in.Encoding, in.Objects)
	}
	counts := map[string]map[string]int{}
	var kinds []string
	for _, o := range r.Objects {
		if counts[o.Kind] == nil {
			counts[o.Kind] = map[string]int{}
			kinds = append(kinds, o.Kind)
		}
		counts[o.Kind][o.Result]++
	}
	for _, k := range kinds {
		c := counts[k]
		var parts []string
		for _, res := range []string{resultImported, resultComments, resultSkipped} {
			if c[res] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c[res], map[string]string{
					resultImported: "imported", resultComments: "kept as comments", resultSkipped: "skipped"}[res]))
			}
		}
		fmt.Fprintf(&b, "  %-22s %s\n", k, strings.Join(parts, ", "))
	}
	// One line each, whatever export text a message quotes: no line
	// breaks or terminal escapes from the export reach the terminal.
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", commentText(fmt.Sprint(e)))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", commentText(fmt.Sprint(wn)))
	}
	if len(r.NotMigrated) > 0 {
		b.WriteString("cannot be migrated:\n")
		for _, l := range r.NotMigrated {
			names := l.Objects
			more := ""
			if len(names) > maxListed {
				more = fmt.Sprintf(" and %d more", len(names)-maxListed)
				names = names[:maxListed]
			}
			fmt.Fprintf(&b, "  - %s (%s%s)\n    next step: %s\n", l.What, strings.Join(names, ", "), more, l.NextStep)
		}
	}
	switch r.ExitStatus {
	case ExitComplete:
		b.WriteString("import complete\n")
	case ExitWarnings:
		fmt.Fprintf(&b, "import usable, with %d warnings to read (exit status 1)\n", len(r.Warnings))
	default:
		fmt.Fprintf(&b, "import refused: %d errors, no config written (exit status 2)\n", len(r.Errors))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
