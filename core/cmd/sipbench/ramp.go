package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// step is one measurement: SIPp at a fixed rate against a fresh server.
type step struct {
	Rate       int            // target calls/s
	Planned    int            // calls SIPp was asked to place
	Created    int            // calls SIPp placed
	Successful int            // calls that got the right 302 and were ACKed
	Failed     int            // calls SIPp counted as failed
	Retrans    int            // UDP retransmissions by SIPp
	Codes      map[int]int    // final responses SIPp received, by status code
	Failures   map[string]int // SIPp's failed-call counters that are not zero ("FailedTimeoutOnRecv" ...)
	Answered   int            // b2bua: calls the callees completed
	Misrouted  int            // b2bua: calls at a callee beyond its share of the mix
	Hold       time.Duration  // b2bua: hold time of the answered calls
	Elapsed    time.Duration  // SIPp's run time, start to last statistics dump
	Mem        memory         // server memory after the step
	Generator  string         // the load generator: sipp or go
	LoadCPU    time.Duration  // CPU time the load generator used (b2bua: the caller and the callees, on one CPU)
	CalleeCPU  time.Duration  // b2bua, go: the callees' part of LoadCPU
	LatP50     time.Duration  // go: INVITE to final answer, median over the answered calls
	LatP99     time.Duration  // go: … 99th percentile
	SendLag    time.Duration  // go: the most an INVITE went out after its scheduled time
	GenNotes   string         // go: unexpected messages, duplicates and socket errors, when any
	ServerCPU  time.Duration  // CPU time the server's processes used during the run
	Pass       bool
	Why        string // why the step did not pass
}

// Achieved is the rate of successful calls over SIPp's run time, less
// the hold time of the last calls, during which none is placed.
func (s step) Achieved() float64 {
	d := s.Elapsed - s.Hold
	if d <= 0 {
		return 0
	}
	return float64(s.Successful) / d.Seconds()
}

// FailedFraction counts every planned call that did not succeed, including
// calls SIPp never placed or never finished.
func (s step) FailedFraction() float64 {
	if s.Planned == 0 {
		return 1
	}
	return float64(s.Planned-s.Successful) / float64(s.Planned)
}

func (s step) String() string {
	v := "pass"
	if !s.Pass {
		v = "FAIL: " + s.Why
	}
	if len(s.Failures) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.Failures)) {
			parts = append(parts, fmt.Sprintf("%s×%d", strings.TrimPrefix(k, "Failed"), s.Failures[k]))
		}
		v += " (" + strings.Join(parts, " ") + ")"
	}
	callees := ""
	if s.Hold > 0 || s.Answered > 0 {
		callees = fmt.Sprintf(", callees completed %d (%d misrouted)", s.Answered, s.Misrouted)
	}
	latency := ""
	if s.LatP50 > 0 {
		latency = fmt.Sprintf(", latency p50 %v p99 %v, send lag %v", s.LatP50.Round(10*time.Microsecond), s.LatP99.Round(10*time.Microsecond), s.SendLag.Round(10*time.Microsecond))
	}
	if s.GenNotes != "" {
		latency += ", " + s.GenNotes
	}
	if s.CalleeCPU > 0 {
		callees += fmt.Sprintf(", generator cpu caller %.0f%% callees %.0f%%", 100*s.load(s.LoadCPU-s.CalleeCPU), 100*s.load(s.CalleeCPU))
	}
	return fmt.Sprintf("rate %6d/s: %d/%d successful, %d failed (%.3f%% lost), %d retransmissions, answers %s%s, achieved %.0f/s in %v%s; cpu %s %.0f%% (%.0f µs/call) server %.0f%% (%.0f µs/call); %s; %s",
		s.Rate, s.Successful, s.Planned, s.Failed, 100*s.FailedFraction(), s.Retrans, s.codes(), callees, s.Achieved(),
		s.Elapsed.Round(time.Millisecond), latency, s.generator(), 100*s.load(s.LoadCPU), s.loadCPUPerCall(), 100*s.load(s.ServerCPU), s.cpuPerCall(), s.Mem, v)
}

// note adds a remark on the generator to the step.
func (s *step) note(n string) {
	if s.GenNotes != "" {
		s.GenNotes += "; "
	}
	s.GenNotes += n
}

// generator names the load generator, SIPp unless the step says.
func (s step) generator() string {
	if s.Generator == "" {
		return generatorSIPp
	}
	return s.Generator
}

// codes lists the final responses as "302×900 404×100".
func (s step) codes() string {
	if len(s.Codes) == 0 {
		return "none"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(s.Codes)) {
		parts = append(parts, fmt.Sprintf("%d×%d", c, s.Codes[c]))
	}
	return strings.Join(parts, " ")
}

// cpuPerCall is the server's CPU time per successful call in µs.
func (s step) cpuPerCall() float64 { return s.perCall(s.ServerCPU) }

// loadCPUPerCall is the load generator's CPU time per successful call in
// µs: unlike its share of a core, it holds when other work on the machine
// takes the generator's CPU.
func (s step) loadCPUPerCall() float64 { return s.perCall(s.LoadCPU) }

func (s step) perCall(cpu time.Duration) float64 {
	if s.Successful == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(s.Successful)
}

// load is cpu as a fraction of the step's run time.
func (s step) load(cpu time.Duration) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return cpu.Seconds() / s.Elapsed.Seconds()
}

// judge sets Pass and Why: under loss failed calls, and the rate held
// within 5 % (SIPp takes longer than planned when the server, or SIPp
// itself, cannot keep up).
func (s *step) judge(loss float64) {
	switch {
	case s.FailedFraction() >= loss:
		s.Pass, s.Why = false, fmt.Sprintf("%.3f%% failed calls, limit %.3f%%", 100*s.FailedFraction(), 100*loss)
	case s.Achieved() < 0.95*float64(s.Rate) && s.load(s.LoadCPU) >= 0.9:
		s.Pass, s.Why = false, fmt.Sprintf("rate not held: %.0f/s of %d/s; the load generator (%s) used %.0f%% of its CPU, so it may be the limit",
			s.Achieved(), s.Rate, s.generator(), 100*s.load(s.LoadCPU))
	case s.Achieved() < 0.95*float64(s.Rate) && s.load(s.ServerCPU) < 0.8 && s.LoadCPU > 0:
		s.Pass, s.Why = false, fmt.Sprintf("rate not held: %.0f/s of %d/s; neither the load generator (%s, %.0f%%) nor the server (%.0f%%) was CPU-bound, so other load on the machine may have interfered",
			s.Achieved(), s.Rate, s.generator(), 100*s.load(s.LoadCPU), 100*s.load(s.ServerCPU))
	case s.Achieved() < 0.95*float64(s.Rate):
		s.Pass, s.Why = false, fmt.Sprintf("rate not held: %.0f/s of %d/s", s.Achieved(), s.Rate)
	default:
		s.Pass, s.Why = true, ""
	}
}

// rampConfig bounds the search for the highest passing rate.
type rampConfig struct {
	Start    int // first rate
	Max      int // highest rate tried
	Step     int // > 0: add Step after each pass and stop at the first failure; 0: double, then bisect
	MaxSteps int // measurements at most
	Grain    int // rates are multiples of Grain during bisection
}

// ramp measures rising rates and returns every step and the index of the
// best passing one (-1 when none passed). In the default mode it doubles
// the rate until a step fails or Max passes, then bisects between the
// best pass and the lowest failure until they are within 5 % (or Grain).
func ramp(ctx context.Context, cfg rampConfig, measure func(context.Context, int) (step, error), logf func(string, ...any)) ([]step, int, error) {
	var (
		steps []step
		best  = -1
		lo    = 0 // highest passing rate
		hi    = 0 // lowest failing rate; 0 = none yet
		rate  = cfg.Start
	)
	for len(steps) < cfg.MaxSteps {
		if err := ctx.Err(); err != nil {
			return steps, best, err
		}
		s, err := measure(ctx, rate)
		if err != nil {
			return steps, best, err
		}
		steps = append(steps, s)
		logf("  %s", s)
		if s.Pass {
			if rate > lo {
				lo, best = rate, len(steps)-1
			}
		} else if hi == 0 || rate < hi {
			hi = rate
		}

		switch {
		case hi == 0 && rate >= cfg.Max:
			return steps, best, nil
		case hi == 0 && cfg.Step > 0:
			rate = min(rate+cfg.Step, cfg.Max)
		case hi == 0:
			rate = min(2*rate, cfg.Max)
		case cfg.Step > 0:
			return steps, best, nil
		default:
			if hi-lo <= max(cfg.Grain, lo/20) {
				return steps, best, nil
			}
			mid := (lo + hi) / 2 / cfg.Grain * cfg.Grain
			if mid <= lo || mid >= hi {
				return steps, best, nil
			}
			rate = mid
		}
	}
	return steps, best, nil
}
