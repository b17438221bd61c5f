package media

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var statsAddrs = []netip.AddrPort{
	{},
	netip.MustParseAddrPort("192.0.2.7:40000"),
	netip.MustParseAddrPort("[2001:db8::7]:5004"),
	netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"),
	netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 65535),
	netip.AddrPortFrom(netip.MustParseAddr(`fe80::1%a"<b>&\`), 2),
	netip.AddrPortFrom(netip.Addr{}, 9),
}

var statsStrings = []string{"", "PCMU", "kernel", `quo"te`, "ctl\x00\x1f", "<&>", "bad\xff", "line\u2028", "📞"}

// fillStats gives every field of v a random value, field by field through
// reflection: a field added to the statistics is covered without naming it.
func fillStats(t *testing.T, r *rand.Rand, v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[netip.AddrPort]():
		v.Set(reflect.ValueOf(statsAddrs[r.IntN(len(statsAddrs))]))
		return
	case reflect.TypeFor[time.Time]():
		if r.IntN(4) > 0 {
			v.Set(reflect.ValueOf(time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("z", 3600*(r.IntN(25)-12)))))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillStats(t, r, v.Field(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			fillStats(t, r, v.Index(i))
		}
	case reflect.Slice:
		n := r.IntN(4)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillStats(t, r, v.Index(i))
		}
	case reflect.String:
		v.SetString(statsStrings[r.IntN(len(statsStrings))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int:
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Uint64:
		if r.IntN(3) > 0 {
			v.SetUint(r.Uint64() >> r.UintN(64))
		}
	case reflect.Float64:
		v.SetFloat([]float64{0, 0.5, 1e-7, 1e21, 123.456, r.Float64() * 1000}[r.IntN(6)])
	default:
		t.Fatalf("fillStats: no rule for %v", v.Type())
	}
}

func TestStatsJSONIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var s SessionStats
		fillStats(t, r, reflect.ValueOf(&s).Elem())
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.AppendJSON(nil)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if string(got) != string(want) {
			t.Fatalf("#%d:\ngot  %s\nwant %s", i, got, want)
		}
	}
}

func TestStatsJSONRefusesWhatEncodingJSONRefuses(t *testing.T) {
	var s SessionStats
	s.Legs[1].JitterMs = math.NaN()
	if _, err := json.Marshal(s); err == nil {
		t.Fatal("encoding/json took NaN")
	}
	if _, err := s.AppendJSON(nil); err == nil {
		t.Error("AppendJSON took NaN")
	}
	s = SessionStats{Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := s.AppendJSON(nil); err == nil {
		t.Error("AppendJSON took the year 10000")
	}
}

func BenchmarkStatsJSON(b *testing.B) {
	var s SessionStats
	r := rand.New(rand.NewPCG(1, 2))
	fillStats(&testing.T{}, r, reflect.ValueOf(&s).Elem())
	s.Streams = s.Streams[:0]
	s.Streams = append(s.Streams, StreamStats{Media: "audio", Proto: "rtp", Primary: true, Legs: s.Legs})
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf, _ = s.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(s)
		}
	})
}

// A call of one audio stream over RTP has no Streams (they would repeat
// Legs in every record); T.38 in its place, or a second stream, has them.
func TestStatsStreamsOnlyWhenMoreThanAudio(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, _, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	st := s.Stats()
	if st.Streams != nil {
		t.Fatalf("audio alone: streams %+v", st.Streams)
	}
	if j, err := st.AppendJSON(nil); err != nil || strings.Contains(string(j), `"Streams":`) {
		t.Fatalf("audio alone: %s, %v", j, err)
	}
}
