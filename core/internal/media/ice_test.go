package media

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// TestICELiteAgainstPionAgent: a real full ICE agent (pion/ice/v4,
// controlling) offers ICE; the engine answers as ICE-lite, passes the
// agent's connectivity checks (MESSAGE-INTEGRITY, FINGERPRINT), latches the
// nominated pair, and media flows both ways over the ICE connection.
func TestICELiteAgainstPionAgent(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	b := newPeer(t)
	agent, local, ufrag, pwd := newICEAgent(t)
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP 0\r\n"+
		"a=ice-ufrag:%[3]s\r\na=ice-pwd:%[4]s\r\na=candidate:%[5]s\r\na=rtcp-mux\r\n",
		local.Address(), local.Port(), ufrag, pwd, local.Marshal())

	s := offerICE(t, e, offer)
	answer, err := s.Answer(SideB, b.sdp("RTP/AVP", "0"))
	if err != nil {
		t.Fatal(err)
	}
	_, sd := mediaAddr(t, answer)
	if !strings.Contains(string(answer), "a=ice-lite") {
		t.Fatalf("no a=ice-lite in the answer:\n%s", answer)
	}
	rUfrag, rPwd := attr(sd, "ice-ufrag"), attr(sd, "ice-pwd")
	if len(rUfrag) != 1 || len(rPwd) != 1 {
		t.Fatalf("ICE credentials missing:\n%s", answer)
	}
	addCandidates(t, agent, attr(sd, "candidate"))
	conn := dialICE(t, agent, rUfrag[0], rPwd[0])

	pkt := rtpPacket(0, 1, 160, 0xA)
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	got, from := recv(t, b.rtp, 2*time.Second)
	if !bytes.Equal(got, pkt) {
		t.Fatal("B did not get the ICE leg's packet")
	}
	back := rtpPacket(0, 1, 160, 0xB)
	b.rtp.WriteToUDPAddrPort(back, from)
	buf := make([]byte, 1500)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], back) {
		t.Fatalf("the agent did not get B's packet: %v", err)
	}
	if st := s.Stats().Legs[SideA]; st.Remote.Port() != uint16(local.Port()) {
		t.Errorf("latched %s, want the nominated candidate port %d", st.Remote, local.Port())
	}

	// A check with the right ufrag and a wrong password is not answered
	// and does not move the latch.
	toA, _ := mediaAddr(t, answer)
	forger := newPeer(t)
	strays := s.Stats().Legs[SideA].Strays
	bad := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(rUfrag[0]+":"+ufrag),
		ice.UseCandidate(), stun.NewShortTermIntegrity("not-the-password-at-all"), stun.Fingerprint)
	forger.rtp.WriteToUDPAddrPort(bad.Raw, toA)
	if _, _, err := tryRecv(forger.rtp, 200*time.Millisecond); err == nil {
		t.Error("a check with a wrong password was answered")
	}
	if st := s.Stats().Legs[SideA]; st.Strays != strays+1 || st.Remote.Port() != uint16(local.Port()) {
		t.Errorf("strays %d → %d, latched %s", strays, st.Strays, st.Remote)
	}
}

// offerICE starts a session whose leg A offers the ICE offer, and checks
// that no ICE reaches plain leg B.
func offerICE(t *testing.T, e *Engine, offer string) *Session {
	t.Helper()
	s, err := e.NewSession("ice", LegProfile{Local: loopback}, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	offerToB, err := s.Offer(SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(offerToB), "ice-") || strings.Contains(string(offerToB), "candidate") {
		t.Fatalf("ICE leaked to the plain leg:\n%s", offerToB)
	}
	return s
}

// newICEAgent is a full ICE agent (pion/ice/v4) on loopback with its one
// host candidate and credentials.
func newICEAgent(t *testing.T) (*ice.Agent, ice.Candidate, string, string) {
	t.Helper()
	agent, err := ice.NewAgentWithOptions(
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithIncludeLoopback(),
		ice.WithInterfaceFilter(func(name string) bool { return name == "lo" }),
		ice.WithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	cands := make(chan ice.Candidate, 8)
	agent.OnCandidate(func(c ice.Candidate) {
		if c != nil {
			cands <- c
		}
	})
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	select {
	case local := <-cands:
		ufrag, pwd, _ := agent.GetLocalUserCredentials()
		return agent, local, ufrag, pwd
	case <-time.After(5 * time.Second):
		t.Fatal("the agent gathered no loopback candidate")
	}
	return nil, nil, "", ""
}

// addCandidates gives agent the answer's candidates of one stream.
func addCandidates(t *testing.T, agent *ice.Agent, cands []string) {
	t.Helper()
	if len(cands) == 0 {
		t.Fatal("no candidates in the answer")
	}
	for _, c := range cands {
		rc, err := ice.UnmarshalCandidate(c)
		if err != nil {
			t.Fatalf("candidate %q: %v", c, err)
		}
		if err := agent.AddRemoteCandidate(rc); err != nil {
			t.Fatal(err)
		}
	}
}

// dialICE runs agent's connectivity checks (controlling) against the
// engine's ICE-lite answer.
func dialICE(t *testing.T, agent *ice.Agent, ufrag, pwd string) *ice.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := agent.Dial(ctx, ufrag, pwd)
	if err != nil {
		t.Fatalf("ICE connectivity checks failed: %v", err)
	}
	return conn
}

// TestICELiteEveryStream: a client that offers ICE on audio and on video
// (as Lync and WebRTC clients do) gets ICE-lite answers on both, each with
// its own credentials and candidates on its own ports, passes both
// streams' checks and gets media on both; a fax line in an ICE offer is
// answered without ICE (UDPTL never runs through STUN).
func TestICELiteEveryStream(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	b, bv := newPeer(t), newPeer(t)
	audio, aLocal, aUfrag, aPwd := newICEAgent(t)
	video, vLocal, vUfrag, vPwd := newICEAgent(t)
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=candidate:%s\r\na=rtcp-mux\r\n"+
		"m=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=candidate:%s\r\na=rtcp-mux\r\n",
		aLocal.Port(), aUfrag, aPwd, aLocal.Marshal(), vLocal.Port(), vUfrag, vPwd, vLocal.Marshal())
	s := offerICE(t, e, offer)
	answerB := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", b.addr().Port(), bv.addr().Port())
	answer, err := s.Answer(SideB, []byte(answerB))
	if err != nil {
		t.Fatal(err)
	}
	_, sd := mediaAddr(t, answer)
	if !strings.Contains(string(answer), "a=ice-lite") || len(sd.MediaDescriptions) != 2 {
		t.Fatalf("want a=ice-lite and two streams:\n%s", answer)
	}
	type stream struct {
		agent *ice.Agent
		peer  *peer
		conn  *ice.Conn
	}
	streams := []*stream{{agent: audio, peer: b}, {agent: video, peer: bv}}
	seen := map[string]bool{}
	for i, m := range sd.MediaDescriptions {
		ufrag, _ := m.Attribute("ice-ufrag")
		pwd, _ := m.Attribute("ice-pwd")
		if ufrag == "" || pwd == "" || seen[ufrag] {
			t.Fatalf("stream %d: ICE credentials missing or shared with another stream:\n%s", i, answer)
		}
		seen[ufrag] = true
		var cands []string
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				cands = append(cands, a.Value)
				if !strings.Contains(a.Value, fmt.Sprintf(" %d typ host", m.MediaName.Port.Value)) {
					t.Fatalf("stream %d: candidate %q is not the stream's port %d", i, a.Value, m.MediaName.Port.Value)
				}
			}
		}
		addCandidates(t, streams[i].agent, cands)
		streams[i].conn = dialICE(t, streams[i].agent, ufrag, pwd)
	}
	for i, st := range streams {
		pt := []uint8{0, 96}[i]
		pkt := rtpPacket(pt, 1, 160, 0xA0+uint32(i))
		if _, err := st.conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		got, from := recv(t, st.peer.rtp, 2*time.Second)
		if !bytes.Equal(got, pkt) {
			t.Fatalf("stream %d: B did not get the ICE leg's packet", i)
		}
		back := rtpPacket(pt, 1, 160, 0xB0+uint32(i))
		st.peer.rtp.WriteToUDPAddrPort(back, from)
		buf := make([]byte, 1500)
		st.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := st.conn.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], back) {
			t.Fatalf("stream %d: the agent did not get B's packet: %v", i, err)
		}
	}

	// Fax beside audio in an offer with session-level ICE: audio gets
	// ICE, the UDPTL line none.
	fa, fb, fi, fbi := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	fax := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=ice-ufrag:faxu\r\na=ice-pwd:faxpasswordfaxpassword00\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=image %d udptl t38\r\n", fa.addr().Port(), fi.addr().Port())
	fs, err := e.NewSession("ice-fax", LegProfile{Local: loopback}, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := fs.Offer(SideA, []byte(fax)); err != nil {
		t.Fatal(err)
	}
	faxAnswer, err := fs.Answer(SideB, fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=image %d udptl t38\r\n", fb.addr().Port(), fbi.addr().Port()))
	if err != nil {
		t.Fatal(err)
	}
	// pion/sdp reads no m=image: the lines as text.
	audioPart, imagePart, ok := strings.Cut(string(faxAnswer), "m=image ")
	if !ok || !strings.Contains(audioPart, "a=ice-ufrag:") || !strings.Contains(audioPart, "a=ice-lite") {
		t.Fatalf("the audio line has no ICE, or no fax line:\n%s", faxAnswer)
	}
	if strings.Contains(imagePart, "a=ice-") || strings.Contains(imagePart, "a=candidate") {
		t.Fatalf("the UDPTL line has ICE:\n%s", faxAnswer)
	}
}

// TestSTUNBindingAnswered: a plain STUN binding request at a media port
// (a keep-alive or a NAT probe) gets a success with the mapped address; one
// with a wrong ICE password on an ICE leg is a stray.
func TestSTUNBindingAnswered(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	a.rtp.WriteToUDPAddrPort(req.Raw, toA)
	got, _ := recv(t, a.rtp, 2*time.Second)
	resp := &stun.Message{Raw: got}
	if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess || resp.TransactionID != req.TransactionID {
		t.Fatalf("binding response %v: %v", resp, err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(resp); err != nil || xor.Port != int(a.addr().Port()) {
		t.Fatalf("XOR-MAPPED-ADDRESS %v: %v", xor, err)
	}
	if st := s.Stats().Legs[SideA]; st.Strays != 0 {
		t.Errorf("a binding request counted as a stray")
	}
	_ = toB
}
