//go:build integration

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/sipptest"
)

// Tests of `edged import exchange` with the real binaries: the imported
// fixture organisation passes `edged config check` as written, and, moved
// to loopback, routes calls the way Exchange would.

// exchangeFixture is a file of the importer's fixture organisation.
func exchangeFixture(name string) string {
	return filepath.Join(repoRoot(), "core", "internal", "exchimport", "testdata", name)
}

// runImport runs edged import exchange with args and returns its exit
// status, standard output and standard error.
func runImport(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, append([]string{"import", "exchange"}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// utf16Copy writes name as Windows PowerShell 5.1 writes Export-Clixml:
// UTF-16 LE with a byte order mark, CRLF line ends.
func utf16Copy(t *testing.T, name, dst string) {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n")
	out := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(text)) {
		out = append(out, byte(u), byte(u>>8))
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationImportExchange(t *testing.T) {
	_, plugins := binaries(t)
	work := t.TempDir()
	// The imported config names bin/plugins and bin/plugins.sha256, as
	// `make plugins` lays them out beside the config.
	if err := os.Symlink(filepath.Dir(plugins), filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runImport(t, work, "-o", "clixml.toml", "--report", "report.json", exchangeFixture("sample.clixml"))
	if code != 1 {
		t.Fatalf("import of sample.clixml: exit status %d, want 1 (usable, with warnings)\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"cannot be migrated:", "PINs", "next step:", `mailbox policy "EXNET-SIP Default Policy" is not in the export`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("report on stderr lacks %q:\n%s", want, stderr)
		}
	}
	imported, err := os.ReadFile(filepath.Join(work, "clixml.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(work, "report.json")); err != nil {
		t.Errorf("no --report file: %v", err)
	}

	t.Run("CSV set and UTF-16 copy give the same config", func(t *testing.T) {
		var csv []string
		for _, f := range []string{"gateways.csv", "huntgroups.csv", "dialplans.csv", "mailboxpolicies.csv", "autoattendants.csv", "mailboxes.csv", "umservice.csv", "callrouter.csv"} {
			csv = append(csv, exchangeFixture(f))
		}
		if code, out, stderr := runImport(t, work, csv...); code != 1 || out != string(imported) {
			t.Errorf("CSV set: exit status %d, same config %v\n%s", code, out == string(imported), stderr)
		}
		wide := filepath.Join(work, "um-utf16.clixml")
		utf16Copy(t, exchangeFixture("sample.clixml"), wide)
		if code, out, stderr := runImport(t, work, wide); code != 1 || out != string(imported) {
			t.Errorf("UTF-16 LE copy: exit status %d, same config %v\n%s", code, out == string(imported), stderr)
		}
	})

	t.Run("refused inputs", func(t *testing.T) {
		for _, f := range []string{"mailboxes-naive.csv", "gateways-format-list.txt", "gateways-format-table.txt"} {
			code, out, stderr := runImport(t, work, "-o", "refused.toml", exchangeFixture(f))
			if code != 2 || out != "" || !strings.Contains(stderr, "Export-Clixml -Path") {
				t.Errorf("%s: exit status %d, want 2 with the recipe on stderr\n%s", f, code, stderr)
			}
			if _, err := os.Stat(filepath.Join(work, "refused.toml")); err == nil {
				t.Errorf("%s: a refused import wrote a config", f)
			}
		}
		if code, _, _ := runImport(t, work); code != 2 {
			t.Errorf("no export named: exit status %d, want 2", code)
		}
	})

	t.Run("config check accepts the config as written", func(t *testing.T) {
		bin, _ := binaries(t)
		cmd := exec.Command(bin, "config", "check", "clixml.toml")
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("edged config check of the imported config: %v\n%s\n%s", err, out, imported)
		}
	})

	t.Run("config check accepts an E164 organisation with a TLS call router", func(t *testing.T) {
		files, err := filepath.Glob(exchangeFixture("variants/e164/*.csv"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no variant: %v", err)
		}
		code, _, stderr := runImport(t, work, append([]string{"-o", "e164.toml"}, files...)...)
		if code != 1 { // the TLS mode waits for its certificate
			t.Fatalf("exit status %d, want 1\n%s", code, stderr)
		}
		bin, _ := binaries(t)
		cmd := exec.Command(bin, "config", "check", "e164.toml")
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			text, _ := os.ReadFile(filepath.Join(work, "e164.toml"))
			t.Fatalf("edged config check: %v\n%s\n%s", err, out, text)
		}
	})

	t.Run("calls", func(t *testing.T) {
		sipptest.Require(t)
		testImportedCalls(t, string(imported))
	})
}

// onLoopback is an imported config with what a test must change: free
// ports on loopback, the plugin paths of the test's build, and edits (the
// gateways' addresses first of all).
func onLoopback(t *testing.T, l *lab, imported string, edits ...[2]string) string {
	t.Helper()
	sums := filepath.Join(filepath.Dir(l.PluginDir), "plugins.sha256")
	text := imported
	for _, r := range append([][2]string{
		{`listen = ["::"]`, `listen = ["127.0.0.1"]`},
		{"[sip]\n", fmt.Sprintf("[admin]\nlisten = \"127.0.0.1:%d\"\n\n[sip]\n", l.AdminPort)},
		{"tcp_port = 5060", fmt.Sprintf("tcp_port = %d", l.SIPPort)},
		{"tls_port = 5061", fmt.Sprintf("tls_port = %d", l.TLSPort)},
		{`dir = "bin/plugins"`, fmt.Sprintf("dir = %q", l.PluginDir)},
		{`sha256sums = "bin/plugins.sha256"`, fmt.Sprintf("sha256sums = %q", sums)},
	}, edits...) {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("the imported config has no %q: the test must follow the importer", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	return text
}

// fixtureOnLoopback is the fixture organisation's config on loopback:
// EXNET-GW1 at 127.0.0.1, and EXNET-SBC2, known by FQDN only, also at
// 127.0.0.2 for TCP.
func fixtureOnLoopback(t *testing.T, l *lab, imported string, edits ...[2]string) string {
	t.Helper()
	return onLoopback(t, l, imported, append([][2]string{
		{`addresses = ["10.20.0.11"]`, `addresses = ["127.0.0.1"]`},
		{`fqdn = "sbc2.example.net"`, "fqdn = \"sbc2.example.net\"\naddresses = [\"127.0.0.2\"]"},
	}, edits...)...)
}

func testImportedCalls(t *testing.T, imported string) {
	t.Helper()
	l := newLab(t)
	l.Raw = fixtureOnLoopback(t, &l, imported)
	e := startEdged(t, l)
	// The back end of the pool is the Exchange UM service EX01, on its
	// UM service port: a 302 names it with the number the gateway called.
	ex01 := func(user string) string { return contactRE(user, "ex01", 5062, "tcp") }
	for _, tt := range []struct {
		name    string
		run     sipptest.Run
		contact string // 302 Contact pattern, or
		code    int    // the refusal
	}{
		// EXNET-GW1 has the pilots 5000 and 5100 and no catch-all: the PBX
		// forwards a user's unanswered call to a pilot, with the user's
		// extension in Diversion, and that picks the mailbox.
		{"Alice, diverted to HG-Main", sipptest.Run{Service: "5000", Headers: []string{"Diversion: <sip:2001@10.20.0.11>;reason=no-answer"}}, ex01("5000"), 0},
		{"Bob, diverted to HG-Main", sipptest.Run{Service: "5000", Headers: []string{"Diversion: <sip:2002@10.20.0.11>;reason=user-busy"}}, ex01("5000"), 0},
		{"Bob's secondary extension, diverted to HG-Sales", sipptest.Run{Service: "5100", Headers: []string{"Diversion: <sip:2102@10.20.0.11>;reason=no-answer"}}, ex01("5100"), 0},
		{"Alice by History-Info", sipptest.Run{Service: "5100", Headers: []string{"History-Info: <sip:2001@10.20.0.11>;index=1, <sip:5100@10.20.0.11;cause=480>;index=1.1"}}, ex01("5100"), 0},
		{"pilot of HG-Main: subscriber access", sipptest.Run{Service: "5000"}, ex01("5000"), 0},
		{"pilot of HG-Sales: subscriber access", sipptest.Run{Service: "5100"}, ex01("5100"), 0},
		// Exchange refuses what matches no hunt group of the gateway...
		{"an extension called directly: no hunt group", sipptest.Run{Service: "2001"}, "", 403},
		{"the subscriber-access number of the dial plan: no hunt group", sipptest.Run{Service: "+15550105000"}, "", 403},
		// ...and, through a pilot, numbers that are no mailbox of the plan.
		{"Carol's extension lives in the SIP plan", sipptest.Run{Service: "5000", Headers: []string{"Diversion: <sip:3003@10.20.0.11>"}}, "", 404},
		{"diverted to nobody", sipptest.Run{Service: "5000", Headers: []string{"Diversion: <sip:2999@10.20.0.11>;reason=no-answer"}}, "", 404},
		{"diverted number too long", sipptest.Run{Service: "5000", Headers: []string{"Diversion: <sip:20011@10.20.0.11>"}}, "", 404},
		{"auto attendant pilot (no hunt group)", sipptest.Run{Service: "5050"}, "", 403},
		{"EXNET-SBC2 is NoNewCalls", sipptest.Run{LocalIP: "127.0.0.2", Service: "carol"}, "", 503},
		{"unknown peer", sipptest.Run{LocalIP: "127.0.0.3", Service: "2001"}, "", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run
			r.Transport = "tcp" // Exchange UM takes SIP over TCP and TLS only
			if tt.code != 0 {
				r.Scenario, r.Codes, r.RetryAfter = sipptest.UACCode, []int{tt.code}, tt.code == 503
			} else {
				r.Scenario, r.ContactPattern = sipptest.UAC302, tt.contact
			}
			e.sipp(t, r)
		})
	}

	t.Run("SIP dial plan once its certificate is in place", func(t *testing.T) {
		// What the operator does after the import: install the TLS files,
		// uncomment them with mode "dual", and enable EXNET-SBC2.
		pki, err := devpki.Write(t.TempDir(), "umedge.local", "sbc2.example.net")
		if err != nil {
			t.Fatal(err)
		}
		l := newLab(t)
		tlsTable := fmt.Sprintf("[sip.tls]\ncert = %q\nkey = %q\nclient_ca = %q\n", pki.ServerCert, pki.ServerKey, pki.CA)
		l.Raw = fixtureOnLoopback(t, &l, imported,
			[2]string{"# mode = \"dual\"\nmode = \"tcp\"", "mode = \"dual\""},
			[2]string{"# [sip.tls]\n", tlsTable + "# "},
			[2]string{`status = "NoNewCalls"`, `status = "Enabled"`})
		l.PKI = pki
		e := startEdged(t, l)
		sbc2 := pki.Clients["sbc2.example.net"]
		tls := func(user string) string { return contactRE(user, "ex01", 5063, "tls") }
		for _, tt := range []struct {
			name    string
			run     sipptest.Run
			contact string
			code    int
		}{
			{"Carol by SIP address", sipptest.Run{Service: "carol"}, tls("carol"), 0},
			{"access number: subscriber access", sipptest.Run{Service: "+15550106000"}, tls("+15550106000"), 0},
			{"call to Carol diverted", sipptest.Run{Service: "+15550106000", Headers: []string{"Diversion: <sip:carol@example.net>;reason=no-answer"}}, tls("+15550106000"), 0},
			// umedge keys SipName mailboxes by SIP user only (the report
			// says so); Exchange would also have matched the EUM extension.
			{"Carol's extension in the SIP plan", sipptest.Run{Service: "3003"}, "", 404},
			{"SIPSecured plan over TCP", sipptest.Run{Transport: "tcp", LocalIP: "127.0.0.2", Service: "carol"}, "", 488},
			{"the TelExtn plan still over TCP", sipptest.Run{Transport: "tcp", Service: "5000", Headers: []string{"Diversion: <sip:2001@10.20.0.11>"}},
				contactRE("5000", "ex01", 5062, "tcp"), 0},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.run
				if r.Transport == "" {
					r.Transport, r.TLSCert, r.TLSKey = "tls", sbc2.Cert, sbc2.Key
				}
				if tt.code != 0 {
					r.Scenario, r.Codes = sipptest.UACCode, []int{tt.code}
				} else {
					r.Scenario, r.ContactPattern = sipptest.UAC302, tt.contact
				}
				e.sipp(t, r)
			})
		}
	})
}

// writeLargeCSVSet writes the CSV set of an organisation of n mailboxes
// with 6-digit extensions 100000.., behind one gateway whose pilot is
// 500000, and returns the files.
func writeLargeCSVSet(t *testing.T, dir string, n int) []string {
	t.Helper()
	small := map[string]string{
		"gateways.csv":   "\"Name\",\"Address\",\"Port\",\"Status\"\r\n\"GW\",\"10.20.0.11\",\"5060\",\"Enabled\"\r\n",
		"huntgroups.csv": "\"Identity\",\"Name\",\"UMIPGateway\",\"PilotIdentifier\",\"UMDialPlan\"\r\n\"GW\\HG\",\"HG\",\"GW\",\"500000\",\"DP\"\r\n",
		"dialplans.csv":  "\"Name\",\"URIType\",\"NumberOfDigitsInExtension\",\"VoIPSecurity\",\"PhoneContext\"\r\n\"DP\",\"TelExtn\",\"6\",\"Unsecured\",\"DP.example.net\"\r\n",
		"umservice.csv":  "\"Name\",\"MaxCallsAllowed\",\"UMStartupMode\"\r\n\"EX01\",\"100\",\"TCP\"\r\n",
		"callrouter.csv": "\"Name\",\"SipTcpListeningPort\",\"SipTlsListeningPort\",\"UMStartupMode\",\"IPAddressFamily\"\r\n\"EX01\",\"5060\",\"5061\",\"TCP\",\"Any\"\r\n",
	}
	var files []string
	for name, text := range small {
		files = append(files, filepath.Join(dir, name))
		if err := os.WriteFile(files[len(files)-1], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString("\"DisplayName\",\"PrimarySmtpAddress\",\"UMEnabled\",\"UMDialPlan\",\"EmailAddresses\"\r\n")
	for i := range n {
		fmt.Fprintf(&b, "\"User %d\",\"user%d@example.net\",\"True\",\"DP\",\"SMTP:user%d@example.net|EUM:%06d;phone-context=DP.example.net\"\r\n", i, i, i, 100000+i)
	}
	files = append(files, filepath.Join(dir, "mailboxes.csv"))
	if err := os.WriteFile(files[len(files)-1], []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return files
}

// TestIntegrationImportLargeOrganisation: a 50,000-mailbox organisation
// imports, passes config check as written, and edged routes into it.
func TestIntegrationImportLargeOrganisation(t *testing.T) {
	sipptest.Require(t)
	_, plugins := binaries(t)
	work := t.TempDir()
	if err := os.Symlink(filepath.Dir(plugins), filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	const n = 50_000
	files := writeLargeCSVSet(t, work, n)
	start := time.Now()
	code, _, stderr := runImport(t, work, append([]string{"-o", "large.toml"}, files...)...)
	t.Logf("edged import exchange of %d mailboxes (CSV set): %v", n, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit status %d, want 0\n%s", code, tail(stderr, 20))
	}
	bin, _ := binaries(t)
	start = time.Now()
	cmd := exec.Command(bin, "config", "check", "large.toml")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("edged config check of the %d-mailbox config: %v\n%s", n, err, out)
	}
	t.Logf("edged config check: %v", time.Since(start).Round(time.Millisecond))

	imported, err := os.ReadFile(filepath.Join(work, "large.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t)
	l.Raw = onLoopback(t, &l, string(imported), [2]string{`addresses = ["10.20.0.11"]`, `addresses = ["127.0.0.1"]`})
	e := startEdged(t, l)
	last := fmt.Sprintf("%06d", 100000+n-1)
	e.sipp(t, sipptest.Run{Scenario: sipptest.UAC302, Transport: "tcp", Service: "500000",
		Headers: []string{"Diversion: <sip:" + last + "@10.20.0.11>;reason=no-answer"}, ContactPattern: contactRE("500000", "ex01", 5062, "tcp")})
	e.sipp(t, sipptest.Run{Scenario: sipptest.UACCode, Transport: "tcp", Service: "500000", Codes: []int{404},
		Headers: []string{"Diversion: <sip:" + fmt.Sprintf("%06d", 100000+n) + "@10.20.0.11>;reason=no-answer"}})
}
