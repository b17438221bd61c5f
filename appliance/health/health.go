// Package health is the appliance's health check of edged: it answers a
// SIP OPTIONS on its configured port (a TLS handshake on a TLS-only
// listener), and its admin API's /healthz says ok.
package health

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/umedge/umedge/core/config"
)

// ErrUnhealthy is wrapped by every failed check; the text says what failed.
var ErrUnhealthy = errors.New("health")

// Target is what Check probes.
type Target struct {
	SIP     netip.AddrPort // where the OPTIONS goes
	Network string         // "udp" or "tcp" for an OPTIONS; "tls" = a TLS handshake without OPTIONS (the listener wants a client certificate)
	Healthz string         // URL of the admin API's /healthz; "" = the admin API is off
}

// TargetOf derives the target from cfg: the first SIP listen address
// (loopback when it is a wildcard), over UDP when the config has UDP,
// else TCP, else the TLS port; and admin.listen's /healthz.
func TargetOf(cfg *config.Config) (Target, error) {
	s := cfg.SIP
	if len(s.Listen) == 0 {
		return Target{}, fmt.Errorf("%w: sip.listen is empty", ErrUnhealthy)
	}
	addr, err := netip.ParseAddr(s.Listen[0])
	if err != nil {
		return Target{}, fmt.Errorf("health: sip.listen[0]: %w", err)
	}
	addr = local(addr.WithZone(""))
	var t Target
	switch {
	case s.Mode.UsesTCP() && s.UDP:
		t.SIP, t.Network = netip.AddrPortFrom(addr, uint16(s.TCPPort)), "udp"
	case s.Mode.UsesTCP():
		t.SIP, t.Network = netip.AddrPortFrom(addr, uint16(s.TCPPort)), "tcp"
	default:
		t.SIP, t.Network = netip.AddrPortFrom(addr, uint16(s.TLSPort)), "tls"
	}
	if cfg.Admin.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Admin.Listen)
		if err != nil {
			return Target{}, fmt.Errorf("health: admin.listen: %w", err)
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			a = netip.IPv4Unspecified() // "" or a name: edged listens on us anyway
		}
		t.Healthz = "http://" + net.JoinHostPort(local(a.WithZone("")).String(), port) + "/healthz"
	}
	return t, nil
}

// local maps a wildcard to loopback: edged listens there too.
func local(a netip.Addr) netip.Addr {
	if a.IsUnspecified() {
		return netip.MustParseAddr("127.0.0.1") // "::" is dual-stack in Go
	}
	return a.Unmap()
}

// Check probes t once; ctx bounds it.
func Check(ctx context.Context, t Target) error {
	if err := options(ctx, t); err != nil {
		return err
	}
	if t.Healthz == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Healthz, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %s: %w", t.Healthz, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s: %s", ErrUnhealthy, t.Healthz, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func options(ctx context.Context, t Target) error {
	network := t.Network
	if network == "tls" {
		network = "tcp"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, t.SIP.String())
	if err != nil {
		return fmt.Errorf("health: SIP %s %s: %w", t.Network, t.SIP, err)
	}
	defer conn.Close()
	if t.Network == "tls" {
		return tlsAnswers(ctx, conn, t)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	}
	callID := token() + "@umedge-init"
	if _, err := io.WriteString(conn, request(t, conn.LocalAddr(), callID)); err != nil {
		return fmt.Errorf("health: send OPTIONS to %s %s: %w", t.Network, t.SIP, err)
	}
	status, gotID, err := readResponse(conn)
	if err != nil {
		return fmt.Errorf("health: OPTIONS to %s %s: %w", t.Network, t.SIP, err)
	}
	switch {
	case gotID != callID:
		return fmt.Errorf("%w: OPTIONS to %s %s: answer for Call-ID %q, not ours", ErrUnhealthy, t.Network, t.SIP, gotID)
	case !strings.HasPrefix(status, "SIP/2.0 2"):
		return fmt.Errorf("%w: OPTIONS to %s %s: %s", ErrUnhealthy, t.Network, t.SIP, status)
	}
	return nil
}

func request(t Target, from net.Addr, callID string) string {
	transport := strings.ToUpper(t.Network)
	local := from.String()
	target := t.SIP.String()
	return "OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK" + token() + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:health@" + local + ">;tag=" + token() + "\r\n" +
		"To: <sip:" + target + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"User-Agent: umedge-init\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// readResponse reads a response's status line and Call-ID; over UDP the
// first datagram is the whole response.
func readResponse(conn net.Conn) (status, callID string, err error) {
	br := bufio.NewReaderSize(conn, 65535)
	status, err = br.ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read answer: %w", err)
	}
	status = strings.TrimSpace(status)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return status, "", fmt.Errorf("read answer headers: %w", err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return status, "", fmt.Errorf("%w: answer without Call-ID", ErrUnhealthy)
		}
		name, value, ok := strings.Cut(line, ":")
		if n := strings.TrimSpace(name); ok && (strings.EqualFold(n, "Call-ID") || n == "i") {
			return status, strings.TrimSpace(value), nil
		}
	}
}

func token() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tlsAnswers runs a TLS handshake on conn without a client certificate.
// The kernel takes a TCP connection for a daemon that hangs; a
// handshake, or the alert with which edged refuses a client without a
// certificate, takes edged itself. The server's certificate is not
// checked: the probe asks whether edged answers, not who it is.
func tlsAnswers(ctx context.Context, conn net.Conn, t Target) error {
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a liveness probe of our own listener on loopback, not a trust decision
	err := tc.HandshakeContext(ctx)
	var op *net.OpError
	if err == nil || errors.As(err, &op) && op.Op == "remote error" {
		return nil // a handshake, or an alert: edged answered
	}
	return fmt.Errorf("%w: TLS handshake with %s: %w", ErrUnhealthy, t.SIP, err)
}
