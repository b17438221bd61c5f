package sipfront

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

func parseRequest(t *testing.T, msg string) *sip.Request {
	t.Helper()
	m, err := newParser().ParseSIP([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestUDPReplierOutlivesThePeer: the replier keeps the socket and the
// response address the request had, while the reader reuses its peer.
func TestUDPReplierOutlivesThePeer(t *testing.T) {
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	p := &peer{transport: router.UDP, src: client.LocalAddr().(*net.UDPAddr).AddrPort()}
	p.reply = replyPath{udp: &udpSocket{pc: server}}
	r := p.replierFor(parseRequest(t, invite(""))) // Via has rport: answer to the source
	p.src = netip.MustParseAddrPort("127.0.0.1:9") // the reader moved on

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.reply([]byte("SIP/2.0 302 Moved Temporarily\r\n\r\n"))
		}()
	}
	wg.Wait()
	buf := make([]byte, 1024)
	for i := range 4 {
		_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if statusOf(string(buf[:n])) != 302 {
			t.Errorf("answer %d = %q", i, buf[:n])
		}
	}
}

// TestStreamReplierOutlivesThePeer: the replier of a stream request is the
// connection's send queue; once the connection has closed it does nothing.
func TestStreamReplierOutlivesThePeer(t *testing.T) {
	sc, far, _ := pipeConn(t, time.Second)
	p := &peer{transport: router.TCP, src: netip.MustParseAddrPort("127.0.0.1:5999")}
	p.reply = replyPath{stream: sc}
	r := p.replierFor(parseRequest(t, invite("")))
	p.scan = scan{} // the reader moved on and reset its scratch

	go r.reply([]byte("SIP/2.0 302 Moved Temporarily\r\n\r\n"))
	buf := make([]byte, 1024)
	_ = far.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := far.Read(buf)
	if err != nil || statusOf(string(buf[:n])) != 302 {
		t.Fatalf("read %q, %v; want the 302", buf[:n], err)
	}
	sc.close()
	done := make(chan struct{})
	go func() {
		r.reply([]byte("late"))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("reply on a closed connection blocked")
	}
}

func TestReplierWithoutPath(t *testing.T) {
	p := &peer{transport: router.UDP, src: netip.MustParseAddrPort("127.0.0.1:5999")}
	p.replierFor(parseRequest(t, invite(""))).reply([]byte("x")) // nothing to send on: no panic
}
