// Package sipprobe asks a SIP server whether it is up: one OPTIONS request
// over UDP or TCP, answered 200.
package sipprobe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// ErrNotOK means the server answered, but not 200.
var ErrNotOK = errors.New("sipprobe: not ok")

var seq atomic.Uint64

// Options sends one OPTIONS to addr over network ("udp" or "tcp") and
// returns the status line of the answer; err is nil only for a 200.
func Options(network, addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	n := seq.Add(1)
	transport := strings.ToUpper(network)
	req := fmt.Sprintf("OPTIONS sip:%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/%[2]s %[3]s;branch=z9hG4bK-probe-%[4]d-%[5]d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@umedge.invalid>;tag=p%[4]d\r\n"+
		"To: <sip:%[1]s>\r\n"+
		"Call-ID: probe-%[4]d-%[5]d\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", addr, transport, c.LocalAddr(), n, time.Now().UnixNano())
	if _, err := c.Write([]byte(req)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "SIP/2.0 200") {
		return line, fmt.Errorf("%w: %s answered %q", ErrNotOK, addr, line)
	}
	return line, nil
}
