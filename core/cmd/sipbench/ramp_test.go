package main

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// fakeMeasure passes every rate up to capacity and fails above it.
func fakeMeasure(capacity int, seen *[]int) func(context.Context, int) (step, error) {
	return func(_ context.Context, rate int) (step, error) {
		*seen = append(*seen, rate)
		s := step{Rate: rate, Planned: rate, Created: rate, Successful: rate, Elapsed: time.Second}
		if rate > capacity {
			s.Successful = rate * 9 / 10
			s.Failed = rate - s.Successful
		}
		s.judge(0.001)
		return s, nil
	}
}

func TestRamp(t *testing.T) {
	tests := []struct {
		name      string
		give      rampConfig
		capacity  int
		wantRates []int
		wantBest  int // rate of the best step; 0 = none passed
	}{
		{
			name:      "doubling then bisection",
			give:      rampConfig{Start: 1000, Max: 40000, MaxSteps: 10, Grain: 100},
			capacity:  5000,
			wantRates: []int{1000, 2000, 4000, 8000, 6000, 5000, 5500, 5200},
			wantBest:  5000,
		},
		{
			name:      "step budget ends the search",
			give:      rampConfig{Start: 1000, Max: 40000, MaxSteps: 5, Grain: 100},
			capacity:  5000,
			wantRates: []int{1000, 2000, 4000, 8000, 6000},
			wantBest:  4000,
		},
		{
			name:      "everything passes up to max",
			give:      rampConfig{Start: 1000, Max: 5000, MaxSteps: 10, Grain: 100},
			capacity:  100000,
			wantRates: []int{1000, 2000, 4000, 5000},
			wantBest:  5000,
		},
		{
			name:      "first step fails, bisect downwards",
			give:      rampConfig{Start: 1000, Max: 40000, MaxSteps: 10, Grain: 100},
			capacity:  300,
			wantRates: []int{1000, 500, 200, 300, 400},
			wantBest:  300,
		},
		{
			name:      "linear steps stop at the first failure",
			give:      rampConfig{Start: 1000, Max: 40000, Step: 1500, MaxSteps: 10, Grain: 100},
			capacity:  4000,
			wantRates: []int{1000, 2500, 4000, 5500},
			wantBest:  4000,
		},
		{
			name:      "nothing passes",
			give:      rampConfig{Start: 1000, Max: 40000, MaxSteps: 10, Grain: 100},
			capacity:  50,
			wantRates: []int{1000, 500, 200, 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []int
			steps, best, err := ramp(context.Background(), tt.give, fakeMeasure(tt.capacity, &seen), t.Logf)
			if err != nil {
				t.Fatalf("ramp() = %v", err)
			}
			if !slices.Equal(seen, tt.wantRates) {
				t.Errorf("rates = %v, want %v", seen, tt.wantRates)
			}
			if len(steps) != len(seen) {
				t.Errorf("%d steps for %d measurements", len(steps), len(seen))
			}
			switch {
			case tt.wantBest == 0 && best != -1:
				t.Errorf("best = step %d (%d/s), want none", best, steps[best].Rate)
			case tt.wantBest != 0 && (best < 0 || steps[best].Rate != tt.wantBest):
				t.Errorf("best = %d, want the %d/s step", best, tt.wantBest)
			}
		})
	}
}

func TestRampStopsOnError(t *testing.T) {
	errBoom := errors.New("boom")
	_, _, err := ramp(context.Background(), rampConfig{Start: 1, Max: 10, MaxSteps: 3, Grain: 1},
		func(context.Context, int) (step, error) { return step{}, errBoom }, t.Logf)
	if !errors.Is(err, errBoom) {
		t.Errorf("ramp() = %v, want %v", err, errBoom)
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name string
		give step
		want bool
	}{
		{name: "all calls on time", give: step{Rate: 1000, Planned: 10000, Successful: 10000, Elapsed: 10 * time.Second}, want: true},
		{name: "loss just under the limit", give: step{Rate: 1000, Planned: 10000, Successful: 9991, Elapsed: 10 * time.Second}, want: true},
		{name: "loss at the limit", give: step{Rate: 1000, Planned: 10000, Successful: 9990, Elapsed: 10 * time.Second}},
		{name: "calls never placed count as lost", give: step{Rate: 1000, Planned: 10000, Created: 5000, Successful: 5000, Elapsed: 5 * time.Second}},
		{name: "rate not held", give: step{Rate: 1000, Planned: 10000, Successful: 10000, Elapsed: 11 * time.Second}},
		{name: "nothing planned", give: step{Rate: 1000}},
		{name: "rate not held, sipp saturated", give: step{Rate: 1000, Planned: 10000, Successful: 10000, Elapsed: 11 * time.Second, LoadCPU: 11 * time.Second}},
		{name: "rate not held, nobody saturated", give: step{Rate: 1000, Planned: 10000, Successful: 10000, Elapsed: 11 * time.Second, LoadCPU: time.Second, ServerCPU: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.give
			s.judge(0.001)
			if s.Pass != tt.want {
				t.Errorf("Pass = %v (%s), want %v", s.Pass, s.Why, tt.want)
			}
			if !s.Pass && s.Why == "" {
				t.Errorf("failing step without a reason")
			}
		})
	}
}

func TestBetter(t *testing.T) {
	pass := func(rate int) result {
		return result{steps: []step{{Rate: rate, Planned: rate, Successful: rate, Elapsed: time.Second, Pass: true}}, best: 0}
	}
	none := result{steps: []step{{Rate: 1}}, best: -1}
	empty := result{best: -1}
	tests := []struct {
		name string
		a, b result
		want bool
	}{
		{name: "anything beats empty", a: none, b: empty, want: true},
		{name: "higher rate wins", a: pass(2000), b: pass(1000), want: true},
		{name: "lower rate loses", a: pass(1000), b: pass(2000)},
		{name: "a pass beats none", a: pass(10), b: none, want: true},
		{name: "none loses to a pass", a: none, b: pass(10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := better(tt.a, tt.b); got != tt.want {
				t.Errorf("better() = %v, want %v", got, tt.want)
			}
		})
	}
}
