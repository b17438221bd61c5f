package sipptest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// UASAnswer is the embedded callee scenario of UAS: every INVITE gets a
// 200 with SDP, the ACK is taken, and the BYE gets its 200.
const UASAnswer = "uas_answer.xml"

// UAS describes a SIPp callee that answers calls until it has taken Calls
// of them or is stopped.
type UAS struct {
	// Addr is the address the callee listens on, "127.0.0.2:5070".
	Addr string
	// Transport is "udp" (default) or "tcp".
	Transport string
	// Calls makes SIPp end by itself after that many calls (SIPp -m);
	// zero runs it until Stop.
	Calls int
	// RecvTimeout is how long a call waits for its ACK and its BYE before
	// it fails: longer than the callers hold their calls. Default
	// DefaultRecvTimeout.
	RecvTimeout time.Duration
	// CPU is the CPU list SIPp is pinned to (taskset -c); "" = unpinned.
	CPU string
	// ExtraArgs are appended to the SIPp command line.
	ExtraArgs []string
}

// UASProc is a running UAS.
type UASProc struct {
	cmd  *exec.Cmd
	dir  string
	out  tailBuffer
	done chan struct{}
	err  error // set when done is closed
}

// Start starts the callee and returns once SIPp is running (SIPp binds its
// socket before it reads the first message; callers should still allow it
// a moment before they send).
func (u UAS) Start() (*UASProc, error) {
	if u.Transport == "" {
		u.Transport = "udp"
	}
	if u.RecvTimeout == 0 {
		u.RecvTimeout = DefaultRecvTimeout
	}
	host, port, err := net.SplitHostPort(u.Addr)
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: uas address %q: %w", ErrInvalidRun, u.Addr, err))
	}
	if u.Transport != "udp" && u.Transport != "tcp" {
		errs = append(errs, fmt.Errorf("%w: uas transport %q is not udp or tcp", ErrInvalidRun, u.Transport))
	}
	if u.Calls < 0 || u.RecvTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: uas calls %d, recv timeout %v", ErrInvalidRun, u.Calls, u.RecvTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	xml, err := Run{Scenario: UASAnswer}.Render()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sipptest-uas-")
	if err != nil {
		return nil, fmt.Errorf("create sipp work dir: %w", err)
	}
	scenario := filepath.Join(dir, UASAnswer)
	if err := os.WriteFile(scenario, xml, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write scenario: %w", err)
	}
	mport, err := freePort(host)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cport, err := freePortBut(host, mport)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{
		"-sf", scenario,
		"-t", map[string]string{"udp": "u1", "tcp": "t1"}[u.Transport],
		"-i", host, "-p", port,
		"-mi", host, "-mp", strconv.Itoa(mport),
		"-cp", strconv.Itoa(cport),
		"-recv_timeout", strconv.FormatInt(u.RecvTimeout.Milliseconds(), 10),
		"-nostdin",
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv"), "-fd", "1",
	}
	if u.Calls > 0 {
		args = append(args, "-m", strconv.Itoa(u.Calls))
	}
	args = append(args, u.ExtraArgs...)
	bin := Binary
	if u.CPU != "" {
		args = append([]string{"-c", u.CPU, Binary}, args...)
		bin = "taskset"
	}
	p := &UASProc{dir: dir, done: make(chan struct{})}
	p.out.max = 64 << 10
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), "TERM=dumb")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start sipp uas on %s: %w", u.Addr, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether SIPp has ended, by itself or by Stop.
func (p *UASProc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop waits up to wait for SIPp to end by itself (after UAS.Calls
// calls), then ends it, and returns what its calls did: Created is the
// number of INVITEs it took as new calls, CPU the CPU time SIPp used. It
// removes SIPp's work files.
func (p *UASProc) Stop(wait time.Duration) (*Result, error) {
	defer os.RemoveAll(p.dir)
	select {
	case <-p.done:
	case <-time.After(wait):
		// SIPp writes its statistics once a second (-fd 1); the last dump
		// is at most that old. Let it write one more after the calls end.
		time.Sleep(1100 * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	res := &Result{Codes: map[int]int{}, Stdout: p.out.String()}
	if ps := p.cmd.ProcessState; ps != nil {
		res.CPU = ps.UserTime() + ps.SystemTime()
	}
	if err := res.readStats(filepath.Join(p.dir, "stat.csv")); err != nil {
		return res, fmt.Errorf("%w: uas: %w: %s", ErrSIPp, err, lastLine(res.Stdout))
	}
	return res, nil
}

// Stats returns SIPp's last statistics dump while it runs (at most a
// second old): Current is the number of calls it has up.
func (p *UASProc) Stats() (*Result, error) {
	res := &Result{Codes: map[int]int{}}
	if err := res.readStats(filepath.Join(p.dir, "stat.csv")); err != nil {
		return nil, fmt.Errorf("uas: %w", err)
	}
	return res, nil
}
