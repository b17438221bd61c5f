package media

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHasAddr: an address literal in any attribute is found however a
// vendor glues it to its own words, and no attribute a real peer sends for
// its audio, video or fax is taken for one.
func TestHasAddr(t *testing.T) {
	for _, v := range []string{
		"10.1.1.5", "::1", "10.1.1.5:5060", "10.1.1.5%eth0", "010.001.001.005", "fe80::1%eth0", "::ffff:10.1.1.5", "[2001:db8::7]:5060",
		"x-nat:src:10.1.1.5", "ipv4:10.1.1.5", "id:10.1.1.5", "cafe10.1.1.5", "host=ab10.1.1.5;x", "addr 10.1.1.5.",
		"10.1.1.5.5060", "route:2001:db8:1:2:3:4:5:6", "abc:2001:db8:1:2:3:4:5:6",
	} {
		if !hasAddr(v) {
			t.Errorf("hasAddr(%q) = false: an address passes to the other side", v)
		}
	}
	// Attributes of real peers' audio, video and fax streams (Polycom,
	// Cisco, AudioCodes, Asterisk, FreeSWITCH, Chrome/Firefox): none names
	// an address, so none may go.
	for _, v := range []string{
		"rtpmap:96 H264/90000", "fmtp:96 profile-level-id=42e01f;packetization-mode=1;max-mbps=108000;max-fs=3600",
		"fmtp:97 profile-level-id=428016;max-br=5000;max-mbps=245000;max-fs=9000;max-smbps=245000;max-fps=6000",
		"fmtp:109 sprop-parameter-sets=Z0LAHtkAoD2QAAADABAAAAMDyPFi5IA=,aMuMsg==",
		"fmtp:34 CIF=1;QCIF=1;SQCIF=1", "fmtp:101 0-15", "fmtp:18 annexb=no", "fmtp:111 minptime=10;useinbandfec=1",
		"rtcp-fb:* ccm fir", "rtcp-fb:96 nack pli", "rtcp-fb:96 ccm tmmbr", "rtcp-fb:96 goog-remb", "rtcp-fb:96 transport-cc",
		"extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "extmap:2/sendrecv http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
		"extmap:3 urn:3gpp:video-orientation", "extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
		"extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
		"ssrc:3735928559 cname:Zx3FOA4ykB8vWFvH", "ssrc:1234 msid:0c2a6f8e-1b6a-4c5e-9f1e-2d3c4b5a6f70 9d8e7f6a-5b4c-3d2e-1f0a-b9c8d7e6f5a4",
		"ssrc-group:FID 3735928559 1122334455", "msid:- {6f12a0d2-8f7c-4b1d-9a3e-2c5b7d9e0f11}",
		"imageattr:97 send [x=[480:16:800],y=[320:16:640],par=[1.2-1.3],q=0.6] recv [x=800,y=640,sar=1.1]",
		"framerate:29.97", "framesize:97 640-480", "content:main", "label:11", "mid:1", "ptime:20", "maxptime:40",
		"T38FaxVersion:0", "T38MaxBitRate:14400", "T38FaxRateManagement:transferredTCF", "T38FaxMaxBuffer:262",
		"T38FaxMaxDatagram:176", "T38FaxUdpEC:t38UDPRedundancy", "T38VendorInfo:0 0 0", "X-fax", "silenceSupp:off - - - -",
		"rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics", "sqn:0", "cdsc:1 image udptl t38",
		"x-rtp-session-id:8B1C6E7A0F5D4C3B", "X-cap:1 image udptl t38", "x-hold:0.0.0.0", "x-any:::",
	} {
		if hasAddr(v) {
			t.Errorf("hasAddr(%q) = true: an attribute the other side needs is dropped", v)
		}
	}
}

// TestVideoAttributesKept: a video phone's offer (Polycom/Cisco style,
// H.264 with feedback, header extensions and SSRCs) reaches the other side
// with every attribute its stream needs, and nothing naming its host.
func TestVideoAttributesKept(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a := newPeer(t)
	s := newSession(t, e, plain, plain)
	need := []string{
		"a=rtpmap:109 H264/90000", "a=fmtp:109 profile-level-id=42e01f;packetization-mode=1;max-mbps=108000;max-fs=3600",
		"a=rtcp-fb:* ccm fir", "a=rtcp-fb:109 nack pli", "a=extmap:3 urn:3gpp:video-orientation",
		"a=ssrc:3735928559 cname:Zx3FOA4ykB8vWFvH", "a=content:main", "a=label:11",
		"a=imageattr:109 send [x=[480:16:800],y=[320:16:640],par=[1.2-1.3],q=0.6] recv *",
	}
	video := "m=video " + strconv.Itoa(int(a.addr().Port())) + " RTP/AVP 109\r\n" + strings.Join(need, "\r\n") + "\r\n" +
		"a=x-nat-src:ipv4:10.1.1.5\r\n"
	out := string(must(s.Offer(SideA, desc(loopback, audioSec(a), video))))
	for _, n := range need {
		if !strings.Contains(out, n+"\r\n") {
			t.Errorf("%q was dropped:\n%s", n, out)
		}
	}
	if strings.Contains(out, "10.1.1.5") {
		t.Errorf("the other side's address passed:\n%s", out)
	}
}

// TestHasAddrLinear: hasAddr's cost grows with its input, not with its
// square: a 256 KB attribute of colons (in a TCP INVITE) is read in
// milliseconds; a quadratic scan would take tens of seconds.
func TestHasAddrLinear(t *testing.T) {
	for _, v := range []string{
		strings.Repeat(":", 256<<10), strings.Repeat("a:", 128<<10), strings.Repeat("1.", 128<<10),
		strings.Repeat("ffff:", 50<<10) + "10.1.1.5", strings.Repeat(".:", 128<<10),
	} {
		start := time.Now()
		hasAddr(v)
		if d := time.Since(start); d > time.Second {
			t.Errorf("hasAddr(%q...) of %d bytes took %v", v[:8], len(v), d)
		}
	}
}
