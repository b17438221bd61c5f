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
	defer agent.Close()
	cands := make(chan ice.Candidate, 8)
	agent.OnCandidate(func(c ice.Candidate) {
		if c != nil {
			cands <- c
		}
	})
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	var local ice.Candidate
	select {
	case local = <-cands:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent gathered no loopback candidate")
	}
	ufrag, pwd, _ := agent.GetLocalUserCredentials()
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP 0\r\n"+
		"a=ice-ufrag:%[3]s\r\na=ice-pwd:%[4]s\r\na=candidate:%[5]s\r\na=rtcp-mux\r\n",
		local.Address(), local.Port(), ufrag, pwd, local.Marshal())

	s, err := e.NewSession("ice", LegProfile{Local: loopback}, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	offerToB, err := s.Offer(SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(offerToB), "ice-") || strings.Contains(string(offerToB), "candidate") {
		t.Fatalf("ICE leaked to the plain leg:\n%s", offerToB)
	}
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
	for _, c := range attr(sd, "candidate") {
		rc, err := ice.UnmarshalCandidate(c)
		if err != nil {
			t.Fatalf("candidate %q: %v", c, err)
		}
		if err := agent.AddRemoteCandidate(rc); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := agent.Dial(ctx, rUfrag[0], rPwd[0])
	if err != nil {
		t.Fatalf("ICE connectivity checks failed: %v", err)
	}

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
