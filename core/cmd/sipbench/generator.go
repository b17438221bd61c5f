package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/umedge/umedge/core/internal/sipload"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// The load generators (-generator).
const (
	generatorSIPp = "sipp"
	generatorGo   = "go"
)

// uacEnv makes the sipbench binary (or its test binary) the Go UAC child:
// measure starts itself again with it set, pinned to -sipp-cpu as SIPp
// would be, so that the generator has one CPU of its own and its CPU
// time is its process's.
const uacEnv = "SIPBENCH_UAC"

// uacChild runs the Go UAC (or with uasChildValue the Go callees) when
// the process was started as one and reports whether it was; main and
// TestMain call it first.
func uacChild() bool {
	var err error
	switch os.Getenv(uacEnv) {
	case "1":
		err = uacMain(os.Args[1:])
	case uasChildValue:
		err = uasMain(os.Args[1:])
	default:
		return false
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench "+os.Getenv(uacEnv)+":", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// uacMain places the calls of an injection file with sipload and writes
// the Result as JSON to -out.
func uacMain(args []string) error {
	fs := flag.NewFlagSet("uac", flag.ContinueOnError)
	var cfg sipload.Config
	var csv, out string
	fs.StringVar(&cfg.Target, "target", "", "server ip:port")
	fs.StringVar(&cfg.Transport, "transport", "udp", "udp or tcp")
	fs.StringVar(&csv, "csv", "", "injection file (sipptest.WriteMix's CSV)")
	fs.IntVar(&cfg.Calls, "calls", 0, "calls to place; the lines repeat")
	fs.Float64Var(&cfg.Rate, "rate", 0, "calls/s")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "Timer B")
	fs.IntVar(&cfg.Conns, "conns", 1, "TCP connections")
	fs.DurationVar(&cfg.Tick, "tick", 0, "sender tick")
	fs.BoolVar(&cfg.FullCalls, "full", false, "full calls through a proxy (scenario b2bua)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "full calls: hold time")
	fs.StringVar(&out, "out", "", "result file (JSON)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errBadFlag, err)
	}
	if out == "" {
		return fmt.Errorf("%w: uac needs -out", errBadFlag)
	}
	lines, err := sipload.ReadCSV(csv)
	if err != nil {
		return err
	}
	cfg.Lines = lines
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, runErr := sipload.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return runErr
}

// singleCSV writes the single repeated call as a one-line injection file:
// INVITE to mailbox 1001 from caller 4000, 302 to 1001@127.0.0.1:5062.
func singleCSV(dir string) (string, error) {
	path := filepath.Join(dir, "single.csv")
	if err := os.WriteFile(path, []byte("SEQUENTIAL\n4000;1001;;;302;1001@127.0.0.1:5062\n"), 0o644); err != nil {
		return "", fmt.Errorf("write single-call csv: %w", err)
	}
	return path, nil
}

// execGo runs the step's calls with the Go UAC: the sipbench binary
// again, pinned as SIPp would be, reading the same injection file.
func (st *stage) execGo(ctx context.Context, conns int, tick time.Duration) (*sipload.Result, error) {
	csv := st.run.Inject
	if csv == "" {
		var err error
		if csv, err = singleCSV(st.dir); err != nil {
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find sipbench's own binary: %w", err)
	}
	out := filepath.Join(st.dir, "uac.json")
	args := []string{exe,
		"-target", st.run.Target, "-transport", st.run.Transport, "-csv", csv,
		"-calls", strconv.Itoa(st.run.Calls), "-rate", strconv.FormatFloat(st.run.Rate, 'f', -1, 64),
		"-timeout", st.run.RecvTimeout.String(), "-conns", strconv.Itoa(max(conns, 1)), "-out", out}
	if tick > 0 {
		args = append(args, "-tick", tick.String())
	}
	if st.run.Scenario == sipptest.UACCallMix {
		args = append(args, "-full", "-hold", st.run.Hold.String())
	}
	if st.run.CPU != "" {
		args = append([]string{"taskset", "-c", st.run.CPU}, args...)
	}
	runCtx, cancel := context.WithTimeout(ctx, st.run.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), uacEnv+"=1")
	cmd.WaitDelay = 5 * time.Second
	output, runErr := cmd.CombinedOutput()
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("go uac: %w: %w: %s", runErr, err, output)
	}
	var res sipload.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("go uac result: %w", err)
	}
	if runErr != nil {
		return &res, fmt.Errorf("go uac: %w: %s", runErr, output)
	}
	return &res, nil
}

// fromUAC fills s from the Go UAC's result.
func (s *step) fromUAC(res *sipload.Result) {
	s.Generator = generatorGo
	s.Created, s.Successful, s.Failed = res.Created, res.Successful, res.Failed
	s.Retrans, s.Elapsed, s.LoadCPU = res.Retransmissions, res.Elapsed, res.CPU
	s.Codes, s.Failures = res.Codes, map[string]int{}
	for k, v := range res.Failures {
		if v > 0 {
			s.Failures[k] = v
		}
	}
	s.LatP50, s.LatP99, s.SendLag = res.Latency.P50, res.Latency.P99, res.SendLag
	if res.Unexpected > 0 || res.Duplicates > 0 || res.Late > 0 || res.TransportErrors > 0 {
		s.note(fmt.Sprintf("%d unexpected messages, %d duplicate answers, %d answers after Timer B, %d socket errors",
			res.Unexpected, res.Duplicates, res.Late, res.TransportErrors))
		if res.FirstError != "" {
			s.GenNotes += " (first: " + res.FirstError + ")"
		}
	}
}
