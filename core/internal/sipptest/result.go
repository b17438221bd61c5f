package sipptest

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is what one SIPp run did.
type Result struct {
	// Created is the number of calls SIPp started.
	Created int
	// Successful and Failed count calls that ran the scenario to its end
	// and calls that did not (unexpected message, failed check, timeout).
	Successful, Failed int
	// Retransmissions counts requests SIPp resent over UDP.
	Retransmissions int
	// Current is the number of calls SIPp had in progress at its last
	// statistics dump.
	Current int
	// Codes counts the final responses SIPp saw, by status code: the
	// expected ones from the scenario's counters and unexpected ones from
	// its error codes log.
	Codes map[int]int
	// Counters holds every cumulative counter of SIPp's statistics file by
	// name without the "(C)" suffix ("FailedCallTimeout" ...).
	Counters map[string]int
	// Elapsed is SIPp's own measure of the run, from its start to its last
	// statistics dump; unlike Duration it leaves out process start and exit.
	Elapsed time.Duration
	// ExitCode is SIPp's exit status: 0 all calls successful, 1 some failed.
	ExitCode int
	// Stdout and Stderr are the tails of SIPp's output; Errors is its
	// unexpected-message log (-trace_err).
	Stdout, Stderr, Errors string
	// Duration is the wall time of the SIPp process and CPU the user and
	// system CPU time it used; CPU close to Duration means SIPp itself was
	// the bottleneck.
	Duration, CPU time.Duration
}

// Incomplete is the number of created calls that ended neither successful
// nor failed (SIPp stopped before they finished).
func (r *Result) Incomplete() int {
	return max(0, r.Created-r.Successful-r.Failed)
}

// FailedFraction is the share of created calls that did not succeed, counting
// calls that never completed as failed. It is 1 when no call was created.
func (r *Result) FailedFraction() float64 {
	if r.Created == 0 {
		return 1
	}
	return float64(r.Created-r.Successful) / float64(r.Created)
}

// String is a one-line summary for logs.
func (r *Result) String() string {
	codes := make([]int, 0, len(r.Codes))
	for c := range r.Codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&b, " %d×%d", c, r.Codes[c])
	}
	return fmt.Sprintf("created %d successful %d failed %d retransmissions %d codes[%s] in %v, cpu %v (exit %d)",
		r.Created, r.Successful, r.Failed, r.Retransmissions, strings.TrimSpace(b.String()),
		r.Duration.Round(time.Millisecond), r.CPU.Round(time.Millisecond), r.ExitCode)
}

var errBadStats = errors.New("malformed sipp statistics")

func (r *Result) readStats(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoStats, err)
	}
	return r.parseStats(b)
}

// parseStats reads the last row of a -trace_stat file: a header row, then
// one row per dump, fields separated by ';'. Counters come in pairs,
// "X(P)" for the last period and "X(C)" cumulative; Exec keeps the latter.
func (r *Result) parseStats(b []byte) error {
	header, row, err := lastRow(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoStats, err)
	}
	r.Counters = map[string]int{}
	for i, name := range header {
		base, ok := strings.CutSuffix(name, "(C)")
		if !ok || i >= len(row) {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(row[i]))
		if err != nil {
			continue // durations and rates are not counters
		}
		r.Counters[base] = v
	}
	for _, need := range []string{"SuccessfulCall", "FailedCall"} {
		if _, ok := r.Counters[need]; !ok {
			return fmt.Errorf("%w: no %s(C) column", errBadStats, need)
		}
	}
	// TotalCallCreated and CurrentCall have no (P)/(C) pair.
	if i := slices.Index(header, "TotalCallCreated"); i >= 0 && i < len(row) {
		r.Created, _ = strconv.Atoi(strings.TrimSpace(row[i]))
	}
	if i := slices.Index(header, "CurrentCall"); i >= 0 && i < len(row) {
		r.Current, _ = strconv.Atoi(strings.TrimSpace(row[i]))
	}
	start, errStart := statTime(header, row, "StartTime")
	end, errEnd := statTime(header, row, "CurrentTime")
	if errStart == nil && errEnd == nil && end >= start {
		r.Elapsed = time.Duration(math.Round((end-start)*1e6)) * time.Microsecond
	}
	r.Successful = r.Counters["SuccessfulCall"]
	r.Failed = r.Counters["FailedCall"]
	r.Retransmissions = r.Counters["Retransmissions"]
	return nil
}

// statTime reads a timestamp column of the statistics file, written as
// "2026-11-26<TAB>08:03:23.356019<TAB>1795680203.356019", as Unix seconds.
func statTime(header, row []string, name string) (float64, error) {
	i := slices.Index(header, name)
	if i < 0 || i >= len(row) {
		return 0, fmt.Errorf("%w: no %s column", errBadStats, name)
	}
	f := strings.Fields(row[i])
	if len(f) == 0 {
		return 0, fmt.Errorf("%w: empty %s", errBadStats, name)
	}
	v, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", errBadStats, name, err)
	}
	return v, nil
}

// countColumn matches the -trace_counts columns for received responses:
// "<index>_<code>_Recv".
var countColumn = regexp.MustCompile(`^\d+_(\d{3})_Recv$`)

// addCounts adds the responses received per scenario message from a
// -trace_counts file to r.Codes. Provisional responses are left out.
func (r *Result) addCounts(b []byte) error {
	header, row, err := lastRow(b)
	if err != nil {
		return fmt.Errorf("%w: counts: %w", errBadStats, err)
	}
	for i, name := range header {
		m := countColumn.FindStringSubmatch(name)
		if m == nil || i >= len(row) {
			continue
		}
		code, _ := strconv.Atoi(m[1])
		n, err := strconv.Atoi(strings.TrimSpace(row[i]))
		if err != nil || code < 200 || n == 0 {
			continue
		}
		r.Codes[code] += n
	}
	return nil
}

// addErrorCodes adds the codes of unexpected responses from a
// -trace_error_codes file to r.Codes. Each dump is one row
// "<time>;<elapsed>;<code>,<code>,...," listing the codes since the
// previous dump.
func (r *Result) addErrorCodes(b []byte) {
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.LastIndexByte(line, ';')
		if i < 0 {
			continue
		}
		for _, f := range strings.Split(line[i+1:], ",") {
			if code, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && code >= 200 && code < 700 {
				r.Codes[code]++
			}
		}
	}
}

// lastRow returns the header and the last non-empty row of a ';'-separated file.
func lastRow(b []byte) (header, row []string, err error) {
	rd := csv.NewReader(bytes.NewReader(b))
	rd.Comma = ';'
	rd.FieldsPerRecord = -1
	rd.LazyQuotes = true
	rows, err := rd.ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("read csv: %w", err)
	}
	if len(rows) < 2 {
		return nil, nil, fmt.Errorf("%d rows, want a header and data", len(rows))
	}
	// -trace_counts appends short timestamp-only rows after the table.
	for i := len(rows) - 1; i > 0; i-- {
		if len(rows[i]) == len(rows[0]) {
			return rows[0], rows[i], nil
		}
	}
	return nil, nil, fmt.Errorf("no row with the header's %d fields", len(rows[0]))
}
