package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// renderTable returns the results as a markdown table. The ratio column
// compares edged's best achieved rate with Kamailio's in the same scenario
// on the same transport.
func renderTable(results []result) string {
	var b strings.Builder
	b.WriteString("| scenario | transport | server | best calls/s | failed % | server CPU µs/call | peak RSS MiB (main / largest / sum, procs) | generator, its CPU (µs/call) | latency p50 / p99 ms | edged/kamailio |\n")
	b.WriteString("|---|---|---|--:|--:|--:|---|---|--:|--:|\n")
	type key struct{ scenario, transport, server string }
	ref := map[key]float64{}
	for _, r := range results {
		if s, ok := r.bestStep(); ok && strings.HasPrefix(r.server, "kamailio") {
			name, _, _ := strings.Cut(r.server, " ") // "kamailio children=4"
			ref[key{r.scenario, r.transport, name}] = s.Achieved()
		}
	}
	for _, r := range results {
		s, ok := r.bestStep()
		if !ok {
			why := "no step passed"
			if len(r.steps) > 0 {
				why += ": " + r.steps[0].Why
			}
			fmt.Fprintf(&b, "| %s | %s | %s | – | – | – | – | – | – | %s |\n", r.scenario, strings.ToUpper(r.transport), r.server, why)
			continue
		}
		ratio := "–"
		if r.server == "edged" || r.server == serverEdgedBase {
			var rs []string
			for _, k := range []string{"kamailio", serverKamailioRTPEngine} {
				if v := ref[key{r.scenario, r.transport, k}]; v > 0 {
					rs = append(rs, fmt.Sprintf("%.2f× %s", s.Achieved()/v, k))
				}
			}
			if len(rs) > 0 {
				ratio = strings.Join(rs, ", ")
			}
		}
		latency := "–"
		if s.LatP50 > 0 {
			latency = fmt.Sprintf("%.2f / %.2f", ms(s.LatP50), ms(s.LatP99))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.3f | %.0f | %.1f / %.1f / %.1f, %d | %s %.0f %% (%.0f) | %s | %s |\n",
			r.scenario, strings.ToUpper(r.transport), r.server, s.Achieved(), 100*s.FailedFraction(), s.cpuPerCall(),
			mib(s.Mem.MainKiB), mib(s.Mem.MaxKiB), mib(s.Mem.SumKiB), s.Mem.Procs, s.generator(), 100*s.load(s.LoadCPU), s.loadCPUPerCall(), latency, ratio)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// appendReport appends a dated section with the environment and the table.
func appendReport(path string, env []string, table string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open report: %w", err)
	}
	var b strings.Builder
	b.WriteString("\n## sipbench run\n\n")
	for _, l := range env {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\n" + table)
	b.WriteString("\nPeak RSS is VmHWM after the best step on a freshly started server: of the started process (main), " +
		"of the largest process, and summed over the process tree (Kamailio's workers share memory, which the sum counts once per process). " +
		"The generator column names the load generator and the share of its CPU it used at that step; latency (INVITE to final answer) is measured by the go generator only.\n")
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
