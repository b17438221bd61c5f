package admin

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestIdleConnectionsClosed: a client that makes one request and then
// keeps the connection open without another is closed after the idle
// timeout. Without one (net/http's default), every such connection, a
// goroutine and a descriptor each, stayed for ever: a remote admin
// listener could be held with connections that only ever sent one
// refused request.
func TestIdleConnectionsClosed(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 300 * time.Millisecond
	s, _ := startAdmin(t, Config{Listen: "127.0.0.1:0"})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", s.Addr())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.Close {
		t.Fatal("the server closed a keep-alive connection at once")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the server sent more than its answer")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an idle keep-alive connection is still open after 5 s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %s, want about the idle timeout", d)
	}
}
