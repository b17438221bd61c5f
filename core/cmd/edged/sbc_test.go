package main

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/media"
	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// Every [media] key reaches the media engine's configuration.
func TestMediaConfigFromKeys(t *testing.T) {
	m := config.Media{PortMin: 20000, PortMax: 20999, Workers: 3, LatchWindow: config.Duration{Duration: 7 * time.Second},
		InactivityTimeout: config.Duration{Duration: 42 * time.Second}, IdlePairs: 123, FastPath: "tc", SendPath: "xdp"}
	got := mediaConfig(m)
	want := media.Config{PortMin: 20000, PortMax: 20999, Workers: 3, LatchWindow: 7 * time.Second,
		InactivityTimeout: 42 * time.Second, IdlePairs: 123, FastPath: fastpath.TC, SendPath: media.SendPathXDP}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mediaConfig(%+v) =\n%+v, want\n%+v", m, got, want)
	}
}

// A peer's ptime (R-SBC-3) reaches its leg's media profile: the offer the
// B2BUA sends the pool's back end asks for it, the answer to the gateway
// too (what the relay sends it), whatever the caller's SDP said.
func TestMediaAdapterPtime(t *testing.T) {
	base := 14000 + 2*rand.IntN(500) // below edged's default media range, as the media package's tests
	eng, err := media.New(media.Config{PortMin: base, PortMax: base + 15, Workers: 1, LatchWindow: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	a := mediaAdapter{eng: eng, peers: map[string]config.SBCPeer{"pool": {Ptime: 20, MediaSecurity: config.MediaRTP}, "gw": {MediaSecurity: config.MediaRTP}}}
	lo := netip.MustParseAddr("127.0.0.1")
	ms, err := a.NewSession("ptime", &b2bua.Target{Gateway: "gw", Pool: "pool"}, lo, lo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:10\r\n"
	toB, err := ms.Offer(b2bua.SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(toB), "a=ptime:20\r\n") || strings.Contains(string(toB), "a=ptime:10") {
		t.Fatalf("offer to the back end:\n%s", toB)
	}
	toA, err := ms.Answer(b2bua.SideB, []byte(strings.Replace(offer, "a=ptime:10", "a=ptime:30", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(toA), "a=ptime:20\r\n") {
		t.Fatalf("answer to the gateway:\n%s", toA)
	}
}
