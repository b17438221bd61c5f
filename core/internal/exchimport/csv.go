package exchimport

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// csvKinds tells a CSV's object kind from its header: the first entry
// whose key columns are all present wins. The order matters: a hunt group
// has a UMIPGateway column and a dial plan, and a call router looks like a
// UM service with ports.
var csvKinds = []struct {
	kind string
	keys []string
}{
	{KindMailbox, []string{"PrimarySmtpAddress", "UMDialPlan"}},
	{KindHuntGroup, []string{"PilotIdentifier", "UMIPGateway"}},
	{KindCallRouter, []string{"SipTcpListeningPort"}},
	{KindService, []string{"MaxCallsAllowed", "UMStartupMode"}},
	{KindPolicy, []string{"MinPINLength"}},
	{KindAutoAttendant, []string{"UMDialPlan", "PilotIdentifierList", "Status"}},
	{KindDialPlan, []string{"URIType", "NumberOfDigitsInExtension"}},
	{KindGateway, []string{"Address", "Port"}},
}

// naiveCollection is what Export-Csv writes for a multi-valued property
// that was not flattened: the collection's .NET type name.
var naiveCollection = regexp.MustCompile("^(System|Microsoft\\.Exchange)\\.[\\w.`\\[\\], =]+$")

// questionMark finds a '?' beside a letter: what Windows PowerShell 5.1's
// default ASCII encoding leaves of a non-ASCII character.
var questionMark = regexp.MustCompile(`\p{L}\?|\?\p{L}`)

// proxyPrefix matches the "type:" that starts a proxy address.
var proxyPrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*:`)

// readCSV reads one Export-Csv file of the recipe: an optional #TYPE line,
// a header, then one object per row.
func readCSV(r *bufio.Reader, name string, opts Options, each func(*Object) error) error {
	sep := opts.ListSep
	if sep == "" {
		sep = "|"
	}
	line := 1
	typeHint := ""
	if head, _ := r.Peek(5); string(head) == "#TYPE" {
		first, err := readLine(r, maxValue)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		typeHint = strings.TrimSpace(strings.TrimPrefix(first, "#TYPE"))
		line++
	}
	cr := csv.NewReader(&runLimited{r: r, name: name, seps: "\n", limit: maxRecord})
	cr.Comma = delimiter(r)
	cr.FieldsPerRecord = -1 // checked below, with a clearer message
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("%w: %s:%d: no CSV header: %w", ErrMalformed, name, line, err)
	}
	header = slices.Clone(header)
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	kind := ""
	for _, k := range csvKinds {
		if hasAll(col, k.keys) {
			kind = k.kind
			break
		}
	}
	if kind == "" {
		if k, _ := kindOf(typeHint); k != "" {
			kind = k
		}
	}
	if kind == "" {
		return fmt.Errorf("%w: %s: its columns (%s) are those of no UM object of the export recipe.\n%s",
			ErrRefused, name, strings.Join(header, ", "), Recipe)
	}
	keep, multi := wanted[kind], multiValued[kind]
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("%w: %s:%d: %w", ErrMalformed, name, pe.Line+line-1, pe.Err)
			}
			return fmt.Errorf("read %s: %w", name, err)
		}
		row, _ := cr.FieldPos(0)
		row += line - 1
		if len(rec) != len(header) {
			return fmt.Errorf("%w: %s:%d: %d fields, the header has %d", ErrMalformed, name, row, len(rec), len(header))
		}
		o := &Object{Kind: kind, Source: fmt.Sprintf("%s:%d", name, row), Props: make(map[string]Value, len(keep))}
		for i, h := range header {
			h = strings.TrimSpace(h)
			if !keep[h] {
				continue
			}
			field := rec[i]
			if multi[h] {
				if naiveCollection.MatchString(strings.TrimSpace(field)) {
					return fmt.Errorf("%w: %s:%d: column %s holds %q, the type name Export-Csv writes for a collection it was not told how to flatten; the values are not in the file.\n%s",
						ErrRefused, name, row, h, strings.TrimSpace(field), Recipe)
				}
				o.Props[h] = Value{IsList: true, List: splitList(field, sep, h == "EmailAddresses")}
			} else {
				o.Props[h] = Value{Text: field}
			}
			if questionMark.MatchString(field) {
				o.Notes = append(o.Notes, Warning{Path: h, Message: fmt.Sprintf("%q has a '?' beside a letter: the file may have been written in ASCII (Export-Csv without -Encoding UTF8), which replaces every non-ASCII letter with '?'", field)})
			}
		}
		if err := each(o); err != nil {
			return err
		}
	}
}

// delimiter tells the field delimiter from the quoted header: ',' as
// Export-Csv writes by default, or ';' or a tab, which -UseCulture and
// -Delimiter give (';' is the list separator of most European locales).
func delimiter(r *bufio.Reader) rune {
	head, _ := r.Peek(r.Size())
	line, _, _ := strings.Cut(string(head), "\n")
	for _, d := range []rune{',', ';', '\t'} {
		if strings.Contains(line, `"`+string(d)+`"`) {
			return d
		}
	}
	return ','
}

func hasAll(col map[string]int, keys []string) bool {
	for _, k := range keys {
		if _, ok := col[k]; !ok {
			return false
		}
	}
	return true
}

// splitList splits a flattened multi-valued field. With ';' as separator,
// fragments of proxy addresses that do not start with a "type:" belong to
// the address before them (EUM:2001;phone-context=…).
func splitList(field, sep string, proxies bool) []string {
	if strings.TrimSpace(field) == "" {
		return nil
	}
	parts := strings.Split(field, sep)
	var out []string
	for _, p := range parts {
		if proxies && sep == ";" && len(out) > 0 && !proxyPrefix.MatchString(p) {
			out[len(out)-1] += sep + p
			continue
		}
		out = append(out, p)
	}
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// readLine reads one line of at most limit bytes.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > limit {
			return "", fmt.Errorf("%w: a line longer than %d bytes", ErrMalformed, limit)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return string(b), err
		}
	}
}
