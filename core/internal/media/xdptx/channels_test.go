package xdptx

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/umedge/umedge/core/internal/netnstest"
)

// TestTXQueues: the TX queues in use as the driver says (veth reports its
// channels), not the allocated ones netlink counts: a veth with 4 queues
// allocated whose channels are set to 3 RX and 1 TX has 1, then 2; an
// interface of another namespace is not found from this one, and a name
// too long for an ifreq is refused.
func TestTXQueues(t *testing.T) {
	netnstest.Available(t)
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("no ethtool (make test installs it: TEST_DEBS)")
	}
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	srv, peer := netnstest.NS("xc-s-"+tag), netnstest.NS("xc-p-"+tag)
	netnstest.Add(t, srv, peer)
	srv.Run(t, "link", "add", "x0", "numtxqueues", "4", "numrxqueues", "4", "type", "veth", "peer", "name", "x1", "numtxqueues", "4", "numrxqueues", "4", "netns", string(peer))
	for _, c := range []struct {
		rx, tx string
		want   int
	}{{"3", "1", 1}, {"3", "2", 2}} {
		srv.Exec(t, "", "ethtool", "-L", "x0", "rx", c.rx, "tx", c.tx)
		var n int
		var err error
		srv.Do(t, func() { n, err = TXQueues("x0") })
		if err != nil || n != c.want {
			t.Errorf("rx %s tx %s: TXQueues = %d, %v; want %d", c.rx, c.tx, n, err, c.want)
		}
	}
	if n, err := TXQueues("x0"); err == nil {
		t.Errorf("x0 of another namespace: %d queues, want an error", n)
	}
	if _, err := TXQueues("an-interface-name-too-long"); err == nil {
		t.Error("a name longer than IFNAMSIZ was not refused")
	}
}
