package media

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// R-SBC-3: towards a leg with a ptime the offer and the answer carry
// a=ptime:N, one, in place of the other side's a=ptime and a=maxptime;
// towards the other leg too (what the relay sends out of the first leg);
// each leg keeps what its own peer's SDP said.
func TestPtimeInSDP(t *testing.T) {
	tests := []struct {
		name             string
		giveA, giveB     int      // the legs' profile ptimes
		giveOffer        []string // A's extra attributes
		giveAnswer       []string // B's
		wantToB, wantToA []string // the a=ptime/a=maxptime values of what B and A get
		wantSDPA         [2]int   // A's leg: ptime, maxptime of A's SDP
		wantSDPB         [2]int
	}{
		{name: "profile on B, A offers 10 with a maxptime", giveB: 20,
			giveOffer: []string{"ptime:10", "maxptime:40"}, giveAnswer: []string{"ptime:30"},
			wantToB: []string{"ptime:20"}, wantToA: []string{"ptime:20"}, wantSDPA: [2]int{10, 40}, wantSDPB: [2]int{30, 0}},
		{name: "profile on A, B's answer says none", giveA: 30,
			giveOffer: []string{"ptime:20"},
			wantToB:   []string{"ptime:30"}, wantToA: []string{"ptime:30"}, wantSDPA: [2]int{20, 0}},
		{name: "profiles on both legs", giveA: 10, giveB: 20,
			giveOffer: []string{"ptime:30"}, giveAnswer: []string{"ptime:40", "maxptime:60"},
			wantToB: []string{"ptime:20"}, wantToA: []string{"ptime:10"}, wantSDPA: [2]int{30, 0}, wantSDPB: [2]int{40, 60}},
		{name: "no profile: the attributes pass as they came",
			giveOffer: []string{"ptime:10", "maxptime:40"}, giveAnswer: []string{"ptime:20.0"},
			wantToB: []string{"ptime:10", "maxptime:40"}, wantToA: []string{"ptime:20.0"}, wantSDPA: [2]int{10, 40}, wantSDPB: [2]int{20, 0}},
		{name: "an odd value is ignored, not refused", giveB: 20,
			giveOffer: []string{"ptime:soon"}, giveAnswer: []string{"ptime:1e9"},
			wantToB: []string{"ptime:20"}, wantToA: []string{"ptime:20"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, 8, nil)
			a, b := newPeer(t), newPeer(t)
			pa, pb := plain, plain
			pa.Ptime, pb.Ptime = tt.giveA, tt.giveB
			s, _, _, offerToB, answerToA := call(t, e, pa, pb, a.sdp("RTP/AVP", "0 8 101", append([]string{"rtpmap:101 telephone-event/8000"}, tt.giveOffer...)...),
				func([]byte) []byte {
					return b.sdp("RTP/AVP", "0 101", append([]string{"rtpmap:101 telephone-event/8000"}, tt.giveAnswer...)...)
				})
			for _, c := range []struct {
				body []byte
				want []string
			}{{offerToB, tt.wantToB}, {answerToA, tt.wantToA}} {
				_, sd := mediaAddr(t, c.body)
				var got []string
				for _, k := range []string{"ptime", "maxptime"} {
					for _, v := range attr(sd, k) {
						got = append(got, k+":"+v)
					}
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("ptime attributes %q, want %q in\n%s", got, c.want, c.body)
				}
			}
			s.mu.Lock()
			la, lb := s.legs[SideA], s.legs[SideB]
			gotA, gotB := [2]int{la.sdpPtime, la.sdpMaxptime}, [2]int{lb.sdpPtime, lb.sdpMaxptime}
			s.mu.Unlock()
			if gotA != tt.wantSDPA || gotB != tt.wantSDPB {
				t.Errorf("recorded ptime/maxptime A %v B %v, want %v %v", gotA, gotB, tt.wantSDPA, tt.wantSDPB)
			}
		})
	}
}

// A session-level a=ptime goes when the stream's own line says another;
// video keeps what it had (ptime is audio's).
func TestPtimeSessionLevelAndVideo(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a := newPeer(t)
	pb := plain
	pb.Ptime = 20
	s, err := e.NewSession("ptime-levels", plain, pb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := strings.Replace(string(a.sdp("RTP/AVP", "0")), "t=0 0\r\n", "t=0 0\r\na=ptime:30\r\n", 1) +
		"m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=ptime:33\r\n"
	out, err := s.Offer(SideA, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "a=ptime:20\r\n"); n != 1 || strings.Contains(string(out), "a=ptime:30") || !strings.Contains(string(out), "a=ptime:33") {
		t.Errorf("want one a=ptime:20 (audio), none of the session's 30, video's 33 kept:\n%s", out)
	}
}

func TestPacketTime(t *testing.T) {
	for give, want := range map[string]int{"20": 20, " 30 ": 30, "20.0": 20, "12.5": 13, "0.4": 0, "0": 0, "-20": 0, "1000": 1000, "1001": 0, "NaN": 0, "x": 0, "": 0} {
		if got := packetTime(give); got != want {
			t.Errorf("packetTime(%q) = %d, want %d", give, got, want)
		}
	}
}

// A profile's ptime outside 10..60 ms is refused when the session is made.
func TestPtimeProfileBounds(t *testing.T) {
	e := newTestEngine(t, 4, nil)
	for _, ms := range []int{-1, 5, 61, 1000} {
		p := plain
		p.Ptime = ms
		if s, err := e.NewSession("bad-ptime", plain, p, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ptime") {
			if s != nil {
				s.Close()
			}
			t.Errorf("ptime %d: err = %v, want ErrConfig naming ptime", ms, err)
		}
	}
}
