package health

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const (
	tick     = 20 * time.Millisecond // probe interval in tests
	deadline = 3 * time.Second       // generous bound for polling waits
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		give    Config
		want    Config // checked when wantErr is nil
		wantErr error
	}{
		{
			name: "defaults",
			give: Config{FromHost: "edge.example.net"},
			want: Config{FromHost: "edge.example.net", Timeout: 2 * time.Second, FailAfter: 2, OKAfter: 1},
		},
		{
			name: "explicit values kept",
			give: Config{FromHost: "edge.example.net", Timeout: time.Second, FailAfter: 3, OKAfter: 4},
			want: Config{FromHost: "edge.example.net", Timeout: time.Second, FailAfter: 3, OKAfter: 4},
		},
		{name: "missing from host", give: Config{}, wantErr: ErrInvalidConfig},
		{name: "from host with port", give: Config{FromHost: "edge:5061"}, wantErr: ErrInvalidConfig},
		{name: "negative timeout", give: Config{FromHost: "e", Timeout: -1}, wantErr: ErrInvalidConfig},
		{name: "negative fail after", give: Config{FromHost: "e", FailAfter: -1}, wantErr: ErrInvalidConfig},
		{name: "negative ok after", give: Config{FromHost: "e", OKAfter: -1}, wantErr: ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.give)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("New() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			defer p.Close()
			if p.cfg != tt.want {
				t.Errorf("cfg = %+v, want %+v", p.cfg, tt.want)
			}
		})
	}
}

func TestNewReportsAllProblems(t *testing.T) {
	_, err := New(Config{Timeout: -1, FailAfter: -1, OKAfter: -1})
	if err == nil {
		t.Fatal("New() = nil error")
	}
	for _, want := range []string{"from host", "timeout", "fail after", "ok after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New() error %q does not mention %q", err, want)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	valid := Target{Name: "backend/local/um1", Addr: "192.0.2.10:5062", Transport: "tcp", Interval: time.Second}
	tests := []struct {
		name     string
		give     func(*Target)
		wantText string // "" means valid
	}{
		{name: "valid", give: func(*Target) {}},
		{name: "dns name and upper-case transport", give: func(t *Target) { t.Addr = "um1.example.net:5063"; t.Transport = "TLS" }},
		{name: "ipv6", give: func(t *Target) { t.Addr = "[2001:db8::1]:5060"; t.Transport = "udp" }},
		{name: "empty name", give: func(t *Target) { t.Name = "" }, wantText: "empty name"},
		{name: "no port", give: func(t *Target) { t.Addr = "192.0.2.10" }, wantText: "missing port"},
		{name: "port zero", give: func(t *Target) { t.Addr = "192.0.2.10:0" }, wantText: "port must be"},
		{name: "port not a number", give: func(t *Target) { t.Addr = "192.0.2.10:sip" }, wantText: "port must be"},
		{name: "empty host", give: func(t *Target) { t.Addr = ":5060" }, wantText: "empty host"},
		{name: "unknown transport", give: func(t *Target) { t.Transport = "sctp" }, wantText: "transport"},
		{name: "zero interval", give: func(t *Target) { t.Interval = 0 }, wantText: "interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := valid
			tt.give(&tg)
			err := tg.Validate()
			if tt.wantText == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidTarget) {
				t.Fatalf("Validate() = %v, want errors.Is %v", err, ErrInvalidTarget)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Validate() = %q, want it to mention %q", err, tt.wantText)
			}
		})
	}
}

// TestProbeOutcome runs one target against each kind of peer and checks how
// the probe result is classified.
func TestProbeOutcome(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		peer      func(t *testing.T) string // returns host:port
		wantUp    bool
		wantCode  int
		wantErr   error // sentinel whose text LastError must contain
	}{
		{name: "udp 200", transport: "udp", peer: answering("udp", 200), wantUp: true, wantCode: 200},
		{name: "tcp 200", transport: "tcp", peer: answering("tcp", 200), wantUp: true, wantCode: 200},
		{name: "udp 404 is still reachable", transport: "udp", peer: answering("udp", 404), wantUp: true, wantCode: 404},
		{name: "tcp 603 is still reachable", transport: "tcp", peer: answering("tcp", 603), wantUp: true, wantCode: 603},
		{name: "udp 503", transport: "udp", peer: answering("udp", 503), wantCode: 503, wantErr: ErrUnavailable},
		{name: "tcp 503", transport: "tcp", peer: answering("tcp", 503), wantCode: 503, wantErr: ErrUnavailable},
		{name: "tcp 500", transport: "tcp", peer: answering("tcp", 500), wantCode: 500, wantErr: ErrUnavailable},
		{name: "udp never answers", transport: "udp", peer: silentUDP, wantErr: ErrTimeout},
		{name: "tcp never answers", transport: "tcp", peer: silentTCP, wantErr: ErrTimeout},
		{name: "tcp port closed", transport: "tcp", peer: closedTCP, wantErr: ErrTransport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProber(t, Config{Timeout: 300 * time.Millisecond, FailAfter: 1})
			addr := tt.peer(t)
			p.Set([]Target{{Name: "peer", Addr: addr, Transport: tt.transport, Interval: tick}})

			waitFor(t, deadline, "two probes", func() bool { return statusOf(t, p, "peer").Probes >= 2 })

			st := statusOf(t, p, "peer")
			if st.Up != tt.wantUp || p.Up("peer") != tt.wantUp {
				t.Errorf("Up = %v (Status) / %v (Up()), want %v; status %+v", st.Up, p.Up("peer"), tt.wantUp, st)
			}
			if st.LastCode != tt.wantCode {
				t.Errorf("LastCode = %d, want %d", st.LastCode, tt.wantCode)
			}
			if tt.wantErr == nil {
				if st.LastError != "" || st.Failures != 0 {
					t.Errorf("LastError = %q, Failures = %d, want none", st.LastError, st.Failures)
				}
				if st.LastRTT <= 0 {
					t.Errorf("LastRTT = %s, want > 0", st.LastRTT)
				}
			} else {
				if !strings.Contains(st.LastError, tt.wantErr.Error()) {
					t.Errorf("LastError = %q, want it to contain %q", st.LastError, tt.wantErr)
				}
				if st.Failures == 0 {
					t.Error("Failures = 0, want > 0")
				}
			}
			if st.Name != "peer" || st.Addr != addr || st.Transport != tt.transport {
				t.Errorf("identity = %q %q %q, want peer %q %q", st.Name, st.Addr, st.Transport, addr, tt.transport)
			}
		})
	}
}

func answering(network string, code int) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		return startSIPServer(t, network, code, nil).addr
	}
}

func TestClosedTCPPortFailsFast(t *testing.T) {
	p := newProber(t, Config{Timeout: 10 * time.Second, FailAfter: 1})
	p.Set([]Target{{Name: "closed", Addr: closedTCP(t), Transport: "tcp", Interval: tick}})

	start := time.Now()
	waitFor(t, time.Second, "closed port marked down", func() bool { return !p.Up("closed") })
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s to mark a refused port down", took)
	}
	if st := statusOf(t, p, "closed"); !strings.Contains(st.LastError, "refused") {
		t.Errorf("LastError = %q, want connection refused", st.LastError)
	}
}

// TestRequestShape checks the OPTIONS a peer receives (RFC 3261 §11).
func TestRequestShape(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := startSIPServer(t, network, 200, nil)
			p := newProber(t, Config{FromHost: "edge.example.net"})
			p.Set([]Target{{Name: "peer", Addr: srv.addr, Transport: network, Interval: tick}})
			waitFor(t, deadline, "two requests", func() bool { return srv.hits.Load() >= 2 })

			reqs := srv.requests()
			seenCallID := map[string]bool{}
			seenBranch := map[string]bool{}
			for i, req := range reqs[:2] {
				if req.Method != sip.OPTIONS {
					t.Errorf("request %d: method %s, want OPTIONS", i, req.Method)
				}
				if mf := req.MaxForwards(); mf == nil || mf.Val() != 70 {
					t.Errorf("request %d: Max-Forwards %v, want 70", i, mf)
				}
				if h := req.GetHeader("Accept"); h == nil || h.Value() != "application/sdp" {
					t.Errorf("request %d: Accept %v, want application/sdp", i, h)
				}
				from := req.From()
				if from == nil || from.Address.Host != "edge.example.net" {
					t.Fatalf("request %d: From %v, want host edge.example.net", i, from)
				}
				if tag, _ := from.Params.Get("tag"); tag == "" {
					t.Errorf("request %d: From has no tag", i)
				}
				via := req.Via()
				if via == nil || via.Host != "edge.example.net" || !strings.EqualFold(via.Transport, network) {
					t.Fatalf("request %d: Via %v, want edge.example.net over %s", i, via, network)
				}
				branch, _ := via.Params.Get("branch")
				if !strings.HasPrefix(branch, "z9hG4bK") {
					t.Errorf("request %d: branch %q lacks the RFC 3261 magic cookie", i, branch)
				}
				seenBranch[branch] = true
				if cid := req.CallID(); cid != nil {
					seenCallID[cid.Value()] = true
				}
				if cseq := req.CSeq(); cseq == nil || cseq.MethodName != sip.OPTIONS {
					t.Errorf("request %d: CSeq %v, want method OPTIONS", i, cseq)
				}
				wantTransport := network != "udp"
				if tp, ok := req.Recipient.UriParams.Get("transport"); ok != wantTransport || (ok && tp != network) {
					t.Errorf("request %d: Request-URI %s, transport param %q", i, req.Recipient.String(), tp)
				}
			}
			if len(seenCallID) != 2 || len(seenBranch) != 2 {
				t.Errorf("Call-IDs %v, branches %v: want fresh values per probe", seenCallID, seenBranch)
			}
		})
	}
}

// TestTransitions flips a peer between 200 and 503 and checks the
// FailAfter/OKAfter thresholds, OnChange and the transition logs.
func TestTransitions(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv := startSIPServer(t, network, 200, nil)
			var ch changes
			logs := &logSink{}
			p := newProber(t, Config{FailAfter: 2, OKAfter: 2},
				WithOnChange(ch.record),
				WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
			p.Set([]Target{{Name: "backend/local/um1", Addr: srv.addr, Transport: network, Interval: tick}})
			name := "backend/local/um1"
			configured := statusOf(t, p, name).LastChange

			waitFor(t, deadline, "three good probes", func() bool { return statusOf(t, p, name).Probes >= 3 })
			if !p.Up(name) || len(ch.list()) != 0 {
				t.Fatalf("healthy peer: Up = %v, changes %v", p.Up(name), ch.list())
			}

			srv.setCode(503)
			waitFor(t, deadline, "down", func() bool { return !p.Up(name) })
			down := statusOf(t, p, name)
			if down.Failures != 2 {
				t.Errorf("went down after %d failures, want FailAfter = 2", down.Failures)
			}
			if down.LastCode != 503 || !down.LastChange.After(configured) {
				t.Errorf("down status %+v: want LastCode 503 and LastChange after %v", down, configured)
			}

			srv.setCode(200)
			waitFor(t, deadline, "up again", func() bool { return p.Up(name) })
			up := statusOf(t, p, name)
			if up.LastCode != 200 || up.LastError != "" || !up.LastChange.After(down.LastChange) {
				t.Errorf("up status %+v after down at %v", up, down.LastChange)
			}

			// Let it run a little longer to show no spurious transitions.
			probes := up.Probes
			waitFor(t, deadline, "more probes", func() bool { return statusOf(t, p, name).Probes >= probes+3 })

			got := ch.list()
			if len(got) != 2 || got[0].up || !got[1].up || got[0].name != name || got[1].name != name {
				t.Fatalf("OnChange calls = %+v, want exactly [down, up] for %s", got, name)
			}
			if got[0].st.Up || got[0].st.Failures != 2 || got[0].st.LastCode != 503 {
				t.Errorf("down OnChange status = %+v", got[0].st)
			}
			okBetween := (got[1].st.Probes - got[1].st.Failures) - (got[0].st.Probes - got[0].st.Failures)
			if !got[1].st.Up || okBetween != 2 {
				t.Errorf("up OnChange status = %+v, came after %d successes, want OKAfter = 2", got[1].st, okBetween)
			}

			warns := logs.records(t, "SIP peer did not respond as expected to a SIP OPTIONS request")
			if len(warns) != 1 {
				t.Fatalf("%d down logs, want 1", len(warns))
			}
			w := warns[0]
			if w["level"] != "WARN" || w["target"] != name || w["transport"] != network ||
				w["addr"] != srv.addr || w["code"] != float64(503) || !strings.Contains(w["error"].(string), "503") {
				t.Errorf("down log = %v", w)
			}
			infos := logs.records(t, "SIP peer responds to OPTIONS again")
			if len(infos) != 1 || infos[0]["level"] != "INFO" || infos[0]["target"] != name {
				t.Errorf("up logs = %v, want one INFO for %s", infos, name)
			}
		})
	}
}

func TestUpBeforeFirstProbe(t *testing.T) {
	p := newProber(t, Config{})
	// An hour-long interval: the first probe is minutes away.
	p.Set([]Target{{Name: "gw", Addr: silentUDP(t), Transport: "udp", Interval: time.Hour}})
	if !p.Up("gw") {
		t.Error("Up(gw) = false before any probe, want optimistic true")
	}
	if p.Up("nobody") {
		t.Error("Up(unknown) = true, want false")
	}
	st := statusOf(t, p, "gw")
	if !st.Up || st.Probes != 0 || st.LastChange.IsZero() {
		t.Errorf("Status = %+v, want up, no probes, LastChange set", st)
	}
}

func TestUnprobeableTargets(t *testing.T) {
	// Probe loops of earlier tests may still be winding down: count from
	// what is left of them, not from zero.
	deadline := time.Now().Add(2 * time.Second)
	for countGoroutines(probeLoop) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := countGoroutines(probeLoop)
	var ch changes
	p := newProber(t, Config{}, WithOnChange(ch.record))
	p.Set([]Target{
		{Name: "tls-without-config", Addr: "127.0.0.1:5061", Transport: "tls", Interval: tick},
		{Name: "bad-interval", Addr: "127.0.0.1:5060", Transport: "udp"},
		{Name: "bad-transport", Addr: "127.0.0.1:5060", Transport: "sctp", Interval: tick},
	})
	if n := countGoroutines(probeLoop) - before; n != 0 {
		t.Errorf("%d probe goroutines for unprobeable targets, want 0", n)
	}
	tests := []struct {
		name     string
		wantText string
	}{
		{"tls-without-config", ErrNoTLSConfig.Error()},
		{"bad-interval", "interval"},
		{"bad-transport", "transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := statusOf(t, p, tt.name)
			if p.Up(tt.name) || st.Up || st.Probes != 0 {
				t.Errorf("status = %+v, want down and never probed", st)
			}
			if !strings.Contains(st.LastError, tt.wantText) {
				t.Errorf("LastError = %q, want it to mention %q", st.LastError, tt.wantText)
			}
		})
	}
	if got := ch.list(); len(got) != 0 {
		t.Errorf("OnChange calls = %v, want none", got)
	}
}

func TestTLS(t *testing.T) {
	cert, pool := testTLS(t)
	srv := startSIPServer(t, "tls", 200, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})

	tests := []struct {
		name      string
		giveTLS   *tls.Config
		wantUp    bool
		wantError string
	}{
		{
			name:    "mutual tls",
			giveTLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
			wantUp:  true,
		},
		{
			name:      "untrusted server",
			giveTLS:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			wantError: ErrTransport.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProber(t, Config{TLS: tt.giveTLS, FailAfter: 1, Timeout: time.Second})
			p.Set([]Target{{Name: "pool", Addr: srv.addr, Transport: "tls", Interval: tick}})
			waitFor(t, deadline, "two probes", func() bool { return statusOf(t, p, "pool").Probes >= 2 })
			st := statusOf(t, p, "pool")
			if st.Up != tt.wantUp {
				t.Errorf("Up = %v, want %v; status %+v", st.Up, tt.wantUp, st)
			}
			if tt.wantUp && st.LastCode != 200 {
				t.Errorf("LastCode = %d, want 200", st.LastCode)
			}
			if !strings.Contains(st.LastError, tt.wantError) {
				t.Errorf("LastError = %q, want it to contain %q", st.LastError, tt.wantError)
			}
		})
	}
}

func TestSet(t *testing.T) {
	busy := startSIPServer(t, "udp", 503, nil)
	fine := startSIPServer(t, "tcp", 200, nil)
	other := startSIPServer(t, "udp", 200, nil)
	var ch changes
	p := newProber(t, Config{FailAfter: 1}, WithOnChange(ch.record))

	p.Set([]Target{
		{Name: "a", Addr: busy.addr, Transport: "udp", Interval: tick},
		{Name: "b", Addr: fine.addr, Transport: "tcp", Interval: tick},
	})
	waitFor(t, deadline, "a down", func() bool { return !p.Up("a") })
	waitFor(t, deadline, "b probed", func() bool { return statusOf(t, p, "b").Probes >= 1 })
	aBefore := statusOf(t, p, "a")

	// a unchanged but for its interval, b removed, c added; a duplicate
	// name keeps the first entry.
	p.Set([]Target{
		{Name: "a", Addr: busy.addr, Transport: "UDP", Interval: 2 * tick},
		{Name: "c", Addr: other.addr, Transport: "udp", Interval: tick},
		{Name: "c", Addr: fine.addr, Transport: "tcp", Interval: tick},
	})
	bHits := fine.hits.Load()

	if p.Up("a") {
		t.Error("Up(a) = true after reload, want its down state kept")
	}
	aAfter := statusOf(t, p, "a")
	if aAfter.Probes < aBefore.Probes || !aAfter.LastChange.Equal(aBefore.LastChange) {
		t.Errorf("a status reset by reload: before %+v, after %+v", aBefore, aAfter)
	}
	if p.Up("b") {
		t.Error("Up(b) = true after it was removed")
	}
	if !p.Up("c") {
		t.Error("Up(c) = false right after it was added, want optimistic true")
	}
	var names []string
	for _, st := range p.Status() {
		names = append(names, st.Name)
	}
	if strings.Join(names, ",") != "a,c" {
		t.Errorf("Status names = %v, want [a c]", names)
	}
	if st := statusOf(t, p, "c"); st.Addr != other.addr {
		t.Errorf("duplicate c: Addr = %s, want the first entry %s", st.Addr, other.addr)
	}
	waitFor(t, deadline, "2 probe goroutines after Set (b's gone)", func() bool { return countGoroutines(probeLoop) == 2 })

	waitFor(t, deadline, "a and c keep probing", func() bool {
		return statusOf(t, p, "a").Probes >= aAfter.Probes+3 && other.hits.Load() >= 3
	})
	if got := fine.hits.Load(); got != bHits {
		t.Errorf("removed target b probed %d more times", got-bHits)
	}

	// Changing the address of a starts it afresh: optimistic, no history.
	p.Set([]Target{
		{Name: "a", Addr: other.addr, Transport: "udp", Interval: tick},
		{Name: "c", Addr: other.addr, Transport: "udp", Interval: tick},
	})
	if st := statusOf(t, p, "a"); !st.Up || st.Addr != other.addr || st.Failures != 0 {
		t.Errorf("a after address change = %+v, want fresh and up", st)
	}

	// Only the first probe of a went down; nothing else transitioned.
	got := ch.list()
	if len(got) != 1 || got[0].name != "a" || got[0].up {
		t.Errorf("OnChange calls = %+v, want one down for a", got)
	}

	p.Set(nil)
	if len(p.Status()) != 0 {
		t.Errorf("after Set(nil): status %v", p.Status())
	}
	// Set waits for each probe loop to close its done channel; the
	// goroutine itself returns a moment later.
	waitFor(t, deadline, "no probe goroutine after Set(nil)", func() bool { return countGoroutines(probeLoop) == 0 })
}

// TestCloseLeavesNothingRunning probes every kind of peer, closes the
// Prober and its peers, and checks that no sipgo or probe goroutine is left.
func TestCloseLeavesNothingRunning(t *testing.T) {
	cert, pool := testTLS(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	p, err := New(Config{
		FromHost:  "edge.example.net",
		Timeout:   100 * time.Millisecond,
		FailAfter: 1,
		TLS:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}, WithLogger(quiet))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}

	// Peers run in a subtest so that their cleanups finish before the
	// goroutine check below.
	t.Run("probe", func(t *testing.T) {
		udp := startSIPServer(t, "udp", 200, nil)
		tcp := startSIPServer(t, "tcp", 503, nil)
		tlsSrv := startSIPServer(t, "tls", 200, serverTLS)
		p.Set([]Target{
			{Name: "udp", Addr: udp.addr, Transport: "udp", Interval: tick},
			{Name: "tcp", Addr: tcp.addr, Transport: "tcp", Interval: tick},
			{Name: "tls", Addr: tlsSrv.addr, Transport: "tls", Interval: tick},
			{Name: "silent", Addr: silentUDP(t), Transport: "udp", Interval: tick},
			{Name: "silent-tcp", Addr: silentTCP(t), Transport: "tcp", Interval: tick},
			{Name: "closed", Addr: closedTCP(t), Transport: "tcp", Interval: tick},
		})
		waitFor(t, deadline, "every target probed twice", func() bool {
			for _, st := range p.Status() {
				if st.Probes < 2 {
					return false
				}
			}
			return true
		})
		if !p.Up("udp") || p.Up("tcp") || !p.Up("tls") || p.Up("silent") || p.Up("closed") {
			t.Errorf("unexpected states: %+v", p.Status())
		}
		// Drop some targets while probes are in flight.
		p.Set([]Target{
			{Name: "tls", Addr: tlsSrv.addr, Transport: "tls", Interval: tick},
			{Name: "silent", Addr: silentUDP(t), Transport: "udp", Interval: tick},
		})
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})

	if err := p.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	before := p.Status()
	p.Set([]Target{{Name: "late", Addr: "127.0.0.1:5060", Transport: "udp", Interval: tick}})
	if len(p.Status()) != len(before) || p.Up("late") {
		t.Error("Set after Close changed the target set")
	}
	if !p.Up("tls") {
		t.Error("Up(tls) after Close = false, want last known state")
	}
	waitFor(t, deadline, "sipgo and probe goroutines to end", func() bool {
		return countGoroutines("emiago/sipgo") == 0 && countGoroutines("core/internal/health.(*") == 0
	})
}

func TestJitter(t *testing.T) {
	const d = time.Second
	for range 1000 {
		if got := jitter(d); got < 900*time.Millisecond || got > 1100*time.Millisecond {
			t.Fatalf("jitter(%s) = %s, want within ±10%%", d, got)
		}
		if got := firstDelay(d); got < 0 || got >= d/5 {
			t.Fatalf("firstDelay(%s) = %s, want in [0, %s)", d, got, d/5)
		}
	}
	if got := jitter(time.Nanosecond); got != time.Nanosecond {
		t.Errorf("jitter(1ns) = %s", got)
	}
}

// TestConcurrentUse exercises Up and Status from many goroutines while Set
// reloads the target set; run with -race.
func TestConcurrentUse(t *testing.T) {
	ok := startSIPServer(t, "udp", 200, nil)
	busy := startSIPServer(t, "tcp", 503, nil)
	p := newProber(t, Config{FailAfter: 1}, WithOnChange(func(string, bool, TargetStatus) {}))
	sets := [][]Target{
		{{Name: "a", Addr: ok.addr, Transport: "udp", Interval: tick}, {Name: "b", Addr: busy.addr, Transport: "tcp", Interval: tick}},
		{{Name: "a", Addr: ok.addr, Transport: "udp", Interval: 2 * tick}},
		{{Name: "b", Addr: busy.addr, Transport: "tcp", Interval: tick}, {Name: "c", Addr: ok.addr, Transport: "udp", Interval: tick}},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = p.Up("a") || p.Up("b") || p.Up("c")
				_ = p.Status()
			}
		}()
	}
	for i := range 30 {
		p.Set(sets[i%len(sets)])
		time.Sleep(tick / 4) // let probes run between reloads
	}
	close(stop)
	wg.Wait()
	if n := countGoroutines(probeLoop); n != 2 {
		t.Errorf("%d probe goroutines, want 2 for the last set", n)
	}
}

// TestTCPPeerRestart drops the peer, connection and all, and brings it back
// on the same address: the prober must notice both and re-dial.
func TestTCPPeerRestart(t *testing.T) {
	srv := startSIPServer(t, "tcp", 200, nil)
	var ch changes
	p := newProber(t, Config{FailAfter: 1, Timeout: 500 * time.Millisecond}, WithOnChange(ch.record))
	p.Set([]Target{{Name: "um1", Addr: srv.addr, Transport: "tcp", Interval: tick}})
	waitFor(t, deadline, "two probes", func() bool { return statusOf(t, p, "um1").Probes >= 2 })

	srv.stop()
	waitFor(t, deadline, "down after the peer stopped", func() bool { return !p.Up("um1") })

	again := startSIPServerAt(t, "tcp", srv.addr, 200, nil)
	waitFor(t, deadline, "up after the peer restarted", func() bool { return p.Up("um1") })
	if again.hits.Load() == 0 {
		t.Error("restarted peer got no OPTIONS")
	}
	if got := ch.list(); len(got) != 2 || got[0].up || !got[1].up {
		t.Errorf("OnChange calls = %+v, want [down, up]", got)
	}
}

// A target's own tuning (R-SBC-6): it goes down after its DownAfter
// failures, is probed every IntervalDown while down, and comes up after
// its UpAfter successes, whatever the Prober's defaults say; /status shows
// the runs and the interval in force.
func TestTuning(t *testing.T) {
	srv := startSIPServer(t, "udp", 200, nil)
	var ch changes
	p := newProber(t, Config{FailAfter: 5, OKAfter: 1}, WithOnChange(ch.record))
	down := 10 * tick
	name := "backend/trunk/udp"
	p.Set([]Target{{Name: name, Addr: srv.addr, Transport: "udp", Interval: tick,
		Tuning: Tuning{IntervalDown: down, UpAfter: 3, DownAfter: 1}}})
	waitFor(t, deadline, "two good probes", func() bool { return statusOf(t, p, name).ConsecutiveOK >= 2 })
	if st := statusOf(t, p, name); !st.Up || st.Interval != tick {
		t.Fatalf("healthy peer: %+v", st)
	}

	srv.setCode(503)
	waitFor(t, deadline, "down", func() bool { return !p.Up(name) })
	st := statusOf(t, p, name)
	if st.ConsecutiveFailed != 1 || st.Interval != down {
		t.Errorf("down after %d failures with interval %s, want DownAfter = 1 and %s", st.ConsecutiveFailed, st.Interval, down)
	}
	// While down, probes come every IntervalDown, not every Interval.
	hits, start := srv.hits.Load(), time.Now()
	waitFor(t, deadline, "three probes while down", func() bool { return srv.hits.Load() >= hits+3 })
	// Two whole intervals at least, less the ±10 % jitter (at the up
	// interval they would take 2 × tick).
	if took := time.Since(start); took < down*3/2 {
		t.Errorf("3 probes while down took %s, want at least 1.5 × %s", took, down)
	}

	srv.setCode(404) // any answer but 5xx says the peer is alive
	waitFor(t, 3*deadline, "up again", func() bool { return p.Up(name) })
	got := ch.list()
	if len(got) != 2 || got[1].st.ConsecutiveOK != 3 || got[1].st.LastCode != 404 {
		t.Fatalf("changes %+v: want down, then up after UpAfter = 3 answers (404)", got)
	}
	if st := statusOf(t, p, name); st.Interval != tick {
		t.Errorf("up again: interval %s, want %s", st.Interval, tick)
	}
}
