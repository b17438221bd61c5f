package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// server is one implementation under test.
type server interface {
	name() string
	// command writes the server's config into dir and returns its command
	// line for SIP on 127.0.0.1:port (UDP and TCP) and a readiness probe,
	// set up for w.
	command(dir string, port int, w workload) (args []string, ready func() error, err error)
}

// workload is what a server is set up for in one step.
type workload struct {
	// mix is the directory the server answers from; nil is the single
	// repeated call.
	mix *sipptest.MixFiles
	// backend, when set, makes the server relay the mix's calls to the
	// mailboxes' back ends (scenario b2bua) instead of redirecting them.
	backend *backend
}

// backend is where the calls of scenario b2bua go: the mix's back-end
// hosts (127.0.0.1 and 127.0.0.2), each a SIPp callee on the same port.
type backend struct {
	port      int
	transport string // udp or tcp
}

// proc is a running server process (and, through Setpgid, its children).
type proc struct {
	name string
	cmd  *exec.Cmd
	port int
	log  *os.File
	done chan struct{}
	err  error // set when done is closed
}

// procs tracks every started process so that main can stop them all on
// any exit path, Ctrl-C included.
var procs = struct {
	sync.Mutex
	m map[*proc]struct{}
}{m: map[*proc]struct{}{}}

func stopAll() {
	procs.Lock()
	list := make([]*proc, 0, len(procs.m))
	for p := range procs.m {
		list = append(list, p)
	}
	procs.Unlock()
	for _, p := range list {
		p.stop()
	}
}

// startServer starts s pinned to cpu (taskset -c; "" = unpinned) and
// waits until its readiness probe passes.
func startServer(s server, cpu, dir string, port int, w workload) (*proc, error) {
	args, ready, err := s.command(dir, port, w)
	if err != nil {
		return nil, err
	}
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	logf, err := os.Create(filepath.Join(dir, s.name()+".log"))
	if err != nil {
		return nil, fmt.Errorf("create server log: %w", err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group so that stop reaches the children; SIGKILL when
	// sipbench dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", s.name(), err)
	}
	p := &proc{name: s.name(), cmd: cmd, port: port, log: logf, done: make(chan struct{})}
	procs.Lock()
	procs.m[p] = struct{}{}
	procs.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			p.stop()
			return nil, fmt.Errorf("%w: %s ended during startup (%w): %s", errExited, s.name(), p.err, p.logTail())
		default:
		}
		err := ready()
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%w: %s on port %d: %w: %s", errNotReady, s.name(), port, err, p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether the server process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after 5 s.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	if p.alive() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			fmt.Fprintf(os.Stderr, "sipbench: %s ignored SIGTERM for 5s, killing it\n", p.name)
		}
	}
	// Kill leftovers of the group (children that outlive their parent).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	p.log.Close()
	procs.Lock()
	delete(procs.m, p)
	procs.Unlock()
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// sipReady checks that 127.0.0.1:port answers an OPTIONS over UDP and
// accepts TCP connections.
func sipReady(port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return fmt.Errorf("tcp: %w", err)
	}
	c.Close()
	u, err := net.Dial("udp", addr)
	if err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	defer u.Close()
	local := u.LocalAddr().String()
	branch := fmt.Sprintf("z9hG4bK-sipbench-%d", time.Now().UnixNano())
	if _, err := u.Write(optionsRequest(local, addr, branch, "")); err != nil {
		return fmt.Errorf("udp: %w", err)
	}
	_ = u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := u.Read(buf)
	if err != nil {
		return fmt.Errorf("udp options: %w", err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
		line, _, _ := bytes.Cut(buf[:n], []byte("\r\n"))
		return fmt.Errorf("udp options answered %q", line)
	}
	return nil
}

// freePort returns a loopback port that is free for UDP and TCP.
func freePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: none free for both udp and tcp")
}

// optionsRequest is an OPTIONS from local to target over UDP, with body
// (text/plain) unless it is empty.
func optionsRequest(local, target, branch, body string) []byte {
	msg := "OPTIONS sip:ping@" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + "\r\n" +
		"From: <sip:4000@" + local + ">;tag=sipbench\r\n" +
		"To: <sip:ping@" + target + ">\r\n" +
		"Call-ID: " + branch + "@sipbench\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Max-Forwards: 70\r\n"
	if body != "" {
		msg += "Content-Type: text/plain\r\n"
	}
	return []byte(msg + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}
