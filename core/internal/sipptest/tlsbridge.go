package sipptest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// nativeTLS reports whether the installed SIPp was built with OpenSSL. Its
// version line then names TLS ("SIPp v3.7.3-TLS-SCTP-PCAP-RTPSTREAM").
// Debian bookworm's sip-tester 3.6.1 is built without it.
var nativeTLS = sync.OnceValue(func() bool {
	out, _ := exec.Command(Binary, "-v").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "SIPp v") {
			return strings.Contains(line, "-TLS")
		}
	}
	return false
})

// tlsBridge stands in for SIPp's TLS transport when SIPp lacks one: SIPp
// connects over TCP to the bridge on loopback, and the bridge carries each
// connection over its own TLS connection to the target, presenting the
// client certificate. The scenario still writes TLS into Via and Contact,
// so the server sees the same bytes over TLS that a TLS-capable SIPp sends.
type tlsBridge struct {
	ln     net.Listener
	target string
	cfg    *tls.Config
	log    Logger
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startTLSBridge(target, certFile, keyFile string, log Logger) (*tlsBridge, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls client certificate: %w", err)
	}
	host, _, _ := net.SplitHostPort(target)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for the tls bridge: %w", err)
	}
	b := &tlsBridge{
		ln:     ln,
		target: target,
		cfg: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// Like SIPp without -tls_ca: the server is the system under
			// test on loopback and is not authenticated here; the server
			// authenticates the client certificate.
			InsecureSkipVerify: true, //nolint:gosec // see above
		},
		log:   log,
		conns: map[net.Conn]struct{}{},
	}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

func (b *tlsBridge) Addr() string { return b.ln.Addr().String() }

func (b *tlsBridge) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.serve(c)
		}()
	}
}

func (b *tlsBridge) serve(c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: b.cfg}
	s, err := d.DialContext(ctx, "tcp", b.target)
	if err != nil {
		if b.log != nil {
			b.log.Logf("sipptest: tls bridge: %v", err)
		}
		return
	}
	defer s.Close()
	if !b.track(c, s) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else if tc, ok := dst.(*tls.Conn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done
	<-done
}

// track registers the pair for Close; false means the bridge is closing.
func (b *tlsBridge) track(conns ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		return false
	}
	for _, c := range conns {
		b.conns[c] = struct{}{}
	}
	return true
}

// Close stops the bridge and its connections and waits for them.
func (b *tlsBridge) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
	return err
}
