package sipptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Exec to zero Run fields.
const (
	DefaultFromUser    = "4000"
	DefaultService     = "1001"
	DefaultRate        = 10
	DefaultRecvTimeout = 5 * time.Second
)

// Run describes one SIPp invocation. The zero value of every field but
// Scenario and Target has a usable default.
type Run struct {
	// Scenario is an embedded scenario (UAC302, UACCode, UACRetrans,
	// UACOptions) or the path of an own SIPp XML file, used verbatim.
	Scenario string
	// Target is the server, "127.0.0.1:5060" or "[::1]:5060".
	Target string
	// LocalIP is the address SIPp sends from (any of 127.0.0.0/8 works on
	// Linux). Default 127.0.0.1, or ::1 for an IPv6 Target.
	LocalIP string
	// Transport is "udp" (default), "tcp" or "tls". SIPp uses one socket
	// (one connection for TCP and TLS) for all calls.
	Transport string
	// Service is the user part of the Request-URI and the To URI (SIPp -s).
	// Default DefaultService.
	Service string
	// FromUser is the user part of the From and Contact URIs. Default
	// DefaultFromUser.
	FromUser string
	// Headers are extra header lines ("Diversion: <sip:1001@gw>;reason=...")
	// added to every INVITE (and OPTIONS).
	Headers []string
	// ContactPattern is a POSIX extended regular expression that the
	// Contact header value of every 302 must match, or the call fails.
	// Default "." (any non-empty Contact).
	ContactPattern string
	// Codes are the accepted final status codes: required for UACCode; for
	// UAC302 they are accepted besides 302 (and skip the Contact check).
	Codes []int
	// RetryAfter makes UACCode require a numeric Retry-After header.
	RetryAfter bool

	// Calls is the number of calls to place (SIPp -m). Default 1.
	Calls int
	// Rate is the number of new calls per RatePeriod (SIPp -r). Default
	// DefaultRate.
	Rate float64
	// RatePeriod is SIPp -rp. Default 1s.
	RatePeriod time.Duration
	// MaxConcurrent caps simultaneous calls (SIPp -l). Zero leaves SIPp's
	// default.
	MaxConcurrent int
	// Vars sets global scenario variables (SIPp -set name value), for own
	// scenarios that declare them.
	Vars map[string]string
	// Inject is an injection file (SIPp -inf) whose lines the scenario
	// reads as [field0], [field1] ...: required by UACMix, which takes one
	// line per call (MixFiles.CSV). With more Calls than lines SIPp starts
	// over at the first line.
	Inject string
	// Hold is how long UACCallMix keeps an answered call up before its
	// BYE; zero sends the BYE right after the ACK.
	Hold time.Duration

	// TLSCert and TLSKey are PEM files SIPp presents for Transport "tls"
	// (both required by SIPp, also when the server does not ask for a
	// client certificate).
	TLSCert, TLSKey string

	// CPU is the CPU list that SIPp is pinned to with taskset -c ("0",
	// "2-3"). Empty runs SIPp unpinned.
	CPU string

	// Timeout bounds the whole SIPp run; SIPp exits with an error when it
	// is reached (-timeout, -timeout_error), and Exec kills it shortly
	// after. Default: the time the calls take at Rate plus 30 s.
	Timeout time.Duration
	// RecvTimeout is how long a call waits for an expected message before
	// it fails (SIPp -recv_timeout). Default DefaultRecvTimeout.
	RecvTimeout time.Duration
	// ExtraArgs are appended to the SIPp command line.
	ExtraArgs []string
}

// Exec runs SIPp for r and returns what the calls did. A call that fails
// (wrong status code, Contact mismatch, timeout) is counted in
// Result.Failed and is not an error; Exec returns an error only when SIPp
// could not run, did not finish in time, or left no statistics. Even then
// the Result, if not nil, holds SIPp's output for the log.
func (r Run) Exec(ctx context.Context, log Logger) (*Result, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	r = r.withDefaults()
	if err := r.validate(); err != nil {
		return nil, err
	}
	xml, err := r.Render()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sipptest-")
	if err != nil {
		return nil, fmt.Errorf("create sipp work dir: %w", err)
	}
	defer os.RemoveAll(dir)
	name := strings.TrimSuffix(filepath.Base(r.Scenario), ".xml")
	scenario := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(scenario, xml, 0o644); err != nil {
		return nil, fmt.Errorf("write scenario: %w", err)
	}
	target, transport := r.Target, r.Transport
	if r.Transport == "tls" && !nativeTLS() {
		bridge, err := startTLSBridge(r.Target, r.TLSCert, r.TLSKey, log)
		if err != nil {
			return nil, err
		}
		defer func() { _ = bridge.Close() }()
		target, transport = bridge.Addr(), "tcp"
		if log != nil {
			log.Logf("sipptest: sipp has no TLS; bridging its TCP through %s to %s over TLS", target, r.Target)
		}
	}
	for attempt := 1; ; attempt++ {
		res, exit, err := r.execOnce(ctx, log, dir, scenario, target, transport)
		// SIPp's ports are checked free before it starts, and another test
		// may take one in between: SIPp then exits 254 before it sends
		// anything, and a run on other ports is the same run.
		if err == nil || exit != 254 || res == nil || !strings.Contains(res.Stderr, "Unable to bind") || attempt == 3 {
			return res, err
		}
		if log != nil {
			log.Logf("sipptest: sipp could not bind its ports (attempt %d), again on others: %s", attempt, lastLine(res.Stderr))
		}
		for _, f := range []string{"stat.csv", "errors.log"} {
			_ = os.Remove(filepath.Join(dir, f))
		}
	}
}

// execOnce runs SIPp once on freshly picked ports and reports its exit
// status with the result.
func (r Run) execOnce(ctx context.Context, log Logger, dir, scenario, target, transport string) (*Result, int, error) {
	args, err := r.args(dir, scenario, target, transport)
	if err != nil {
		return nil, 0, err
	}
	bin := Binary
	if r.CPU != "" {
		args = append([]string{"-c", r.CPU, Binary}, args...)
		bin = "taskset"
	}

	// SIPp ends itself at r.Timeout (-timeout_error); the context deadline
	// is the backstop for a SIPp that hangs anyway.
	runCtx, cancel := context.WithTimeout(ctx, r.Timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TERM=dumb")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr tailBuffer
	stdout.max, stderr.max = 64<<10, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if log != nil {
		log.Logf("sipptest: %s %s", bin, strings.Join(args, " "))
	}

	start := time.Now()
	runErr := cmd.Run()
	res := &Result{
		Duration: time.Since(start),
		Stdout:   stdout.String(),
		Stderr:   stderr.String(),
		Codes:    map[int]int{},
	}
	if ps := cmd.ProcessState; ps != nil {
		res.CPU = ps.UserTime() + ps.SystemTime()
	}
	if b, err := os.ReadFile(filepath.Join(dir, "errors.log")); err == nil {
		res.Errors = truncate(string(b), 64<<10)
	}
	if err := ctx.Err(); err != nil {
		return res, 0, fmt.Errorf("run sipp: %w", err)
	}
	if err := runCtx.Err(); err != nil {
		return res, 0, fmt.Errorf("%w after %v: %w", ErrTimeout, res.Duration.Round(time.Millisecond), err)
	}
	exit := 0
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			return res, 0, fmt.Errorf("run sipp: %w", runErr)
		}
		exit = ee.ExitCode()
	}
	res.ExitCode = exit

	if err := res.readStats(filepath.Join(dir, "stat.csv")); err != nil {
		return res, exit, fmt.Errorf("%w (exit status %d): %w; stderr: %s", ErrSIPp, exit, err, lastLine(res.Stderr))
	}
	if counts, _ := filepath.Glob(filepath.Join(dir, "*_counts.csv")); len(counts) > 0 {
		if b, err := os.ReadFile(counts[0]); err == nil {
			if err := res.addCounts(b); err != nil {
				return res, exit, err
			}
		}
	}
	if codes, _ := filepath.Glob(filepath.Join(dir, "*_error_codes.*")); len(codes) > 0 {
		if b, err := os.ReadFile(codes[0]); err == nil {
			res.addErrorCodes(b)
		}
	}
	if log != nil {
		log.Logf("sipptest: %s", res)
	}
	switch exit {
	case 0, 1:
		return res, exit, nil
	default:
		// -timeout_error and fatal errors end here; 99 means no call ran.
		return res, exit, fmt.Errorf("%w: exit status %d: %s", ErrSIPp, exit, lastLine(res.Stderr))
	}
}

func (r Run) withDefaults() Run {
	if r.Transport == "" {
		r.Transport = "udp"
	}
	r.Transport = strings.ToLower(r.Transport)
	if r.Service == "" {
		r.Service = DefaultService
	}
	if r.Calls == 0 {
		r.Calls = 1
	}
	if r.Rate == 0 {
		r.Rate = DefaultRate
	}
	if r.RatePeriod == 0 {
		r.RatePeriod = time.Second
	}
	if r.RecvTimeout == 0 {
		r.RecvTimeout = DefaultRecvTimeout
	}
	if r.Timeout == 0 {
		calls := float64(r.Calls) / r.Rate * float64(r.RatePeriod)
		r.Timeout = time.Duration(calls) + 30*time.Second
	}
	return r
}

func (r Run) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidRun, fmt.Sprintf(format, args...)))
	}
	if r.Scenario == "" {
		bad("no scenario")
	}
	if _, _, err := net.SplitHostPort(r.Target); err != nil {
		bad("target %q: %v", r.Target, err)
	}
	switch r.Transport {
	case "udp", "tcp":
	case "tls":
		if r.TLSCert == "" || r.TLSKey == "" {
			bad("tls needs TLSCert and TLSKey")
		}
	default:
		bad("transport %q is not udp, tcp or tls", r.Transport)
	}
	if r.Calls < 0 || r.Rate < 0 || r.MaxConcurrent < 0 || r.RatePeriod < time.Millisecond {
		bad("calls %d, rate %g, max concurrent %d, rate period %v", r.Calls, r.Rate, r.MaxConcurrent, r.RatePeriod)
	}
	if r.Timeout < time.Second {
		bad("timeout %v below 1s", r.Timeout)
	}
	if r.Scenario == UACMix {
		if r.Inject == "" {
			bad("%s needs Inject", UACMix)
		}
		if r.Transport == "tls" {
			bad("%s expects the TCP Contact of udp and tcp calls, not tls", UACMix)
		}
	}
	if r.Scenario == UACCallMix && r.Inject == "" {
		bad("%s needs Inject", UACCallMix)
	}
	if r.Hold < 0 {
		bad("hold %v below 0", r.Hold)
	}
	return errors.Join(errs...)
}

// args builds the SIPp command line: dir receives SIPp's files, and SIPp
// sends to target over transport (which differ from r's with a TLS bridge).
func (r Run) args(dir, scenario, target, transport string) ([]string, error) {
	host, _, _ := net.SplitHostPort(target)
	local := "127.0.0.1"
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		local = "::1"
	}
	if r.LocalIP != "" {
		local = r.LocalIP
	}
	port, err := freePort(local)
	if err != nil {
		return nil, err
	}
	// SIPp binds media sockets (-mp, -mp+2) and a control socket (-cp) even
	// when the scenario has no media; it moves on to the next port when one
	// is taken, so starting from a free one only avoids collisions.
	mport, err := freePortBut(local, port)
	if err != nil {
		return nil, err
	}
	cport, err := freePortBut(local, port, mport)
	if err != nil {
		return nil, err
	}
	args := []string{
		target,
		"-sf", scenario,
		"-t", map[string]string{"udp": "u1", "tcp": "t1", "tls": "l1"}[transport],
		"-i", local,
		"-p", strconv.Itoa(port),
		"-mi", local,
		"-mp", strconv.Itoa(mport),
		"-s", r.Service,
		"-m", strconv.Itoa(r.Calls),
		"-r", strconv.FormatFloat(r.Rate, 'f', -1, 64),
		"-rp", strconv.FormatInt(r.RatePeriod.Milliseconds(), 10),
		"-recv_timeout", strconv.FormatInt(r.RecvTimeout.Milliseconds(), 10),
		"-timeout", strconv.Itoa(int(math.Ceil(r.Timeout.Seconds()))),
		"-timeout_error",
		"-nostdin",
		"-cp", strconv.Itoa(cport),
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv"), "-fd", "3600",
		"-trace_counts",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_error_codes",
	}
	if r.MaxConcurrent > 0 {
		args = append(args, "-l", strconv.Itoa(r.MaxConcurrent))
	}
	if transport == "tls" {
		args = append(args, "-tls_cert", r.TLSCert, "-tls_key", r.TLSKey)
	}
	if r.Inject != "" {
		// SIPp runs in dir.
		inf, err := filepath.Abs(r.Inject)
		if err != nil {
			return nil, fmt.Errorf("injection file: %w", err)
		}
		args = append(args, "-inf", inf)
	}
	if r.Scenario == UACRetrans && r.Transport == "udp" {
		// SIPp would take the second, identical 302 for a retransmission
		// of the first and answer it by resending the INVITE.
		args = append(args, "-nr")
	}
	keys := make([]string, 0, len(r.Vars))
	for k := range r.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-set", k, r.Vars[k])
	}
	return append(args, r.ExtraArgs...), nil
}

// freePort returns a port that is free for both UDP and TCP on ip. SIPp
// binds its SIP port for the chosen transport; asking the kernel for a
// port avoids SIPp's default of 5060 colliding with the server under test.
// freePort returns a port free for UDP and TCP on ip, and the three UDP
// ports above it (SIPp binds media at -mp .. -mp+3). It draws from below
// the kernel's ephemeral range (32768 and up on Linux), so that sockets
// other programs open meanwhile do not take it.
func freePort(ip string) (int, error) {
	addr := net.ParseIP(ip)
	for range 200 {
		base := 20000 + 4*rand.IntN(3000)
		if free(addr, base, 4) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("find a free port on %s: none in 20000..32000", ip)
}

// freePortBut is freePort with a base none of taken: each base is
// checked free on its own, so two picks could otherwise land on the same
// one (SIPp then fails to bind its control socket, exit 254).
func freePortBut(ip string, taken ...int) (int, error) {
	for range 20 {
		p, err := freePort(ip)
		if err != nil || !slices.Contains(taken, p) {
			return p, err
		}
	}
	return 0, fmt.Errorf("find a free port on %s besides %v: none", ip, taken)
}

func free(ip net.IP, base, n int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: base})
	if err != nil {
		return false
	}
	closers = append(closers, l)
	for p := base; p < base+n; p++ {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: p})
		if err != nil {
			return false
		}
		closers = append(closers, u)
	}
	return true
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.buf.String() }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[truncated]"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
