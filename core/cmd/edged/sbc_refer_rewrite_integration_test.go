//go:build integration

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// refer_mode = "rewrite" for the caller (R-SBC-7, "same for REFER"): the
// UM back end answers and transfers with REFER to a target on the caller's
// gateway; the caller gets the REFER with its Refer-To rewritten onto
// edged (a signed marker, no address of the target) and, once UM has hung
// up, INVITEs it; edged proxies that call to the original target, each
// side seeing only edged.
func TestIntegrationSBCReferRewritten(t *testing.T) {
	sipptest.Require(t)
	um, target := freePort(t), freePort(t)
	cdr := filepath.Join(t.TempDir(), "cdr.jsonl")
	e := startEdged(t, sbcLab(t, um, cdr, "[sbc.peers.lab]\nrefer_mode = \"rewrite\"\n"))
	tg := startSIPp(t, "target", "-sf", sbcScenario("sbc_uas.xml"), "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(target),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-m", "1")
	u := uas(t, "um", "sbc_uas_refer_bye.xml", um, "-set", "target", strconv.Itoa(target))
	callerPort := freePort(t)
	caller := startSIPp(t, "caller", e.target("udp"), "-sf", sbcScenario("sbc_uac_refer_follow.xml"), "-t", "u1", "-i", "127.0.0.1",
		"-p", strconv.Itoa(callerPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t)), "-s", "1001", "-m", "1")
	caller.wait(t, 30*time.Second)
	u.wait(t, 10*time.Second)
	tg.wait(t, 10*time.Second)

	got := caller.received(t)
	hidden(t, "the caller", got, false, ":"+strconv.Itoa(target), ":"+strconv.Itoa(um), "SIPpTag01") // UM's and the target's tags
	var rewritten bool
	for _, m := range got {
		rewritten = rewritten || strings.Contains(m, "REFER sip:") && strings.Contains(m, "Refer-To: <sip:umr.")
	}
	if !rewritten {
		t.Error("the caller got no REFER with a marker Refer-To")
	}
	var notified bool
	for _, m := range u.received(t) {
		notified = notified || strings.Contains(m, "NOTIFY sip:") && strings.Contains(m, "SIP/2.0 100 Trying")
	}
	if !notified {
		t.Error("UM got no NOTIFY from the caller")
	}
	tgot := tg.received(t)
	hidden(t, "the target", tgot, false, ":"+strconv.Itoa(um), ":"+strconv.Itoa(callerPort), "SIPpTag00", "umr.")
	if len(tgot) == 0 || !strings.Contains(tgot[0], "INVITE sip:2002@") {
		t.Errorf("the target got no INVITE for 2002 first: %q", tgot)
	}
	waitFor(t, 5*time.Second, "the CDRs", func() bool { _, err := os.Stat(cdr); return err == nil && len(readCDRs(t, cdr)) == 2 })
	recs := readCDRs(t, cdr)
	if recs[0]["reason"] != "callee hung up" || recs[1]["status"] != 200.0 || recs[1]["reason"] != "caller hung up" {
		t.Errorf("CDRs: %v / %v", recs[0], recs[1])
	}
}
