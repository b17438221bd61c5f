package sipptest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func writeTestMix(t *testing.T, m Mix) *MixFiles {
	t.Helper()
	f, err := WriteMix(t.TempDir(), m)
	if err != nil {
		t.Fatalf("WriteMix(%+v) = %v", m, err)
	}
	return f
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mixDirectory is the directory as umrouter would read it from the
// settings file: only the keys umrouter's README documents are decoded,
// and an unknown key fails the test, as umrouter's strict decoding would.
type mixDirectory struct {
	digits   int
	access   map[string]bool
	dpHost   string
	hosts    map[string]string // extension -> back-end host
	tcpPorts map[string]int    // host -> tcp_port
	gateway  []string
}

func readMixSettings(t *testing.T, path, instance string) mixDirectory {
	t.Helper()
	var doc struct {
		Plugins map[string]struct {
			Settings struct {
				Gateways map[string]struct {
					Addresses []string `toml:"addresses"`
				} `toml:"gateways"`
				HuntGroups map[string]struct {
					Gateway  string `toml:"gateway"`
					Pilot    string `toml:"pilot"`
					DialPlan string `toml:"dial_plan"`
				} `toml:"hunt_groups"`
				DialPlans map[string]struct {
					URIType         string   `toml:"uri_type"`
					ExtensionDigits int      `toml:"extension_digits"`
					VoIPSecurity    string   `toml:"voip_security"`
					AccessNumbers   []string `toml:"access_numbers"`
					Pool            string   `toml:"pool"`
				} `toml:"dial_plans"`
				Mailboxes map[string]struct {
					Extension string `toml:"extension"`
					DialPlan  string `toml:"dial_plan"`
					Pool      string `toml:"pool"`
				} `toml:"mailboxes"`
				Pools map[string]struct {
					OptionsInterval string `toml:"options_interval"`
					Backends        []struct {
						Name            string `toml:"name"`
						Host            string `toml:"host"`
						TCPPort         int    `toml:"tcp_port"`
						MaxCallsAllowed int    `toml:"max_calls_allowed"`
					} `toml:"backends"`
				} `toml:"pools"`
			} `toml:"settings"`
		} `toml:"plugins"`
	}
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("settings have keys outside umrouter's schema: %v", und)
	}
	s := doc.Plugins[instance].Settings
	if len(doc.Plugins) != 1 || len(s.DialPlans) != 1 || len(s.Gateways) != 1 {
		t.Fatalf("want one instance %q with one gateway and one dial plan, got %+v", instance, doc.Plugins)
	}
	d := mixDirectory{access: map[string]bool{}, hosts: map[string]string{}, tcpPorts: map[string]int{}}
	for _, gw := range s.Gateways {
		d.gateway = gw.Addresses
	}
	poolHost := map[string]string{}
	for name, p := range s.Pools {
		if len(p.Backends) != 1 {
			t.Fatalf("pool %s has %d back ends, want 1", name, len(p.Backends))
		}
		poolHost[name] = p.Backends[0].Host
		d.tcpPorts[p.Backends[0].Host] = p.Backends[0].TCPPort
	}
	for name, dp := range s.DialPlans {
		if dp.URIType != "TelExtn" || dp.VoIPSecurity != "Unsecured" {
			t.Fatalf("dial plan %s is %s/%s, want TelExtn/Unsecured", name, dp.URIType, dp.VoIPSecurity)
		}
		d.digits, d.dpHost = dp.ExtensionDigits, poolHost[dp.Pool]
		for _, a := range dp.AccessNumbers {
			d.access[a] = true
		}
		for hname, hg := range s.HuntGroups {
			if hg.DialPlan != name {
				t.Errorf("hunt group %s leads to %s, want %s", hname, hg.DialPlan, name)
			}
		}
		for mname, mb := range s.Mailboxes {
			pool := mb.Pool
			if pool == "" {
				pool = dp.Pool
			}
			if mb.DialPlan != name || poolHost[pool] == "" || d.hosts[mb.Extension] != "" {
				t.Fatalf("mailbox %s: dial plan %q, pool %q, or its extension is taken", mname, mb.DialPlan, pool)
			}
			d.hosts[mb.Extension] = poolHost[pool]
		}
	}
	return d
}

var (
	telCaller = regexp.MustCompile(`^\+?[0-9]+$`)
	extension = regexp.MustCompile(`^[0-9]+$`)
)

// answer is umrouter's decision (core/sdk/router/decide.go) for one mix
// line, from the directory alone: the code and the Contact "user@host:port".
func (d mixDirectory) answer(caller, called, reason, diverted string) (int, string) {
	if caller != "" && !strings.EqualFold(caller, "anonymous") && !telCaller.MatchString(caller) {
		return 404, "" // bad-number: calling party
	}
	fits := func(n string) bool { return extension.MatchString(n) && len(n) == d.digits }
	contact := func(host string) (int, string) {
		return 302, fmt.Sprintf("%s@%s:%d", called, host, d.tcpPorts[host])
	}
	switch {
	case reason != "":
		if !fits(diverted) || d.hosts[diverted] == "" {
			return 404, ""
		}
		return contact(d.hosts[diverted])
	case d.access[called]:
		return contact(d.dpHost)
	case !fits(called) || d.hosts[called] == "":
		return 404, ""
	default:
		return contact(d.hosts[called])
	}
}

// Every line's expected answer is what umrouter decides for it from the
// settings file, the CSV says the same as MixFiles.Calls, and the Kamailio
// table holds the same directory.
func TestWriteMixAnswersFollowTheDirectory(t *testing.T) {
	const calls = 3000
	f := writeTestMix(t, Mix{Seed: 7, Mailboxes: 2000, Calls: calls, Instance: "router1"})
	d := readMixSettings(t, f.Settings, "router1")
	if len(d.hosts) != 2000 || d.digits != MixDigits || !d.access[MixPilot] || len(d.access) != 1 {
		t.Fatalf("directory: %d mailboxes, %d digits, access %v; want 2000, %d, [%s]", len(d.hosts), d.digits, d.access, MixDigits, MixPilot)
	}
	if len(d.gateway) != 1 || d.gateway[0] != "127.0.0.1" {
		t.Errorf("gateway addresses %v, want [127.0.0.1]", d.gateway)
	}
	for ext, host := range d.hosts {
		if f.Mailboxes[ext] != host {
			t.Fatalf("MixFiles.Mailboxes[%s] = %q, settings say %q", ext, f.Mailboxes[ext], host)
		}
	}

	lines := strings.Split(strings.TrimSuffix(string(readFile(t, f.CSV)), "\n"), "\n")
	if lines[0] != "SEQUENTIAL" || len(lines) != calls+1 || len(f.Calls) != calls {
		t.Fatalf("csv: first line %q, %d lines, %d calls; want SEQUENTIAL and %d calls", lines[0], len(lines), len(f.Calls), calls)
	}
	callers := map[string]bool{}
	codes := map[int]int{}
	for i, line := range lines[1:] {
		fields := strings.Split(line, ";")
		if len(fields) != 6 {
			t.Fatalf("line %d %q: %d fields, want 6", i+1, line, len(fields))
		}
		caller, called, reason, diverted, code, contact := fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
		wantCode, wantContact := d.answer(caller, called, reason, diverted)
		c := f.Calls[i]
		if contact == "-" {
			contact = ""
		}
		if code != strconv.Itoa(wantCode) || contact != wantContact || c.Code != wantCode || c.Contact != wantContact {
			t.Errorf("line %d %q (%s): csv says %s %q, Calls says %d %q; the directory gives %d %q",
				i+1, line, c.Class, code, contact, c.Code, c.Contact, wantCode, wantContact)
		}
		if c.Caller != caller || c.Called != called || c.Reason != reason || c.Diverted != diverted {
			t.Errorf("line %d %q: Calls[%d] = %+v", i+1, line, i, c)
		}
		if callers[caller] {
			t.Errorf("line %d: caller %s used twice", i+1, caller)
		}
		callers[caller] = true
		codes[wantCode]++
	}
	// 90 of every 100 lines are answered with a 302, 10 with 404.
	if codes[302] != calls*90/100 || codes[404] != calls*10/100 {
		t.Errorf("codes %v, want %d × 302 and %d × 404", codes, calls*90/100, calls*10/100)
	}

	rows := strings.Split(strings.TrimSpace(string(readFile(t, filepath.Join(f.KamailioDB, MixKamailioTable)))), "\n")
	if len(rows) != 2001 || !strings.HasPrefix(rows[0], "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)") {
		t.Fatalf("kamailio table: %d rows, header %q", len(rows), rows[0])
	}
	for _, row := range rows[1:] {
		f := strings.Split(row, ":")
		if len(f) != 6 || d.hosts[f[1]] != f[4] || f[2] != "0" || f[3] != "0" {
			t.Errorf("kamailio row %q does not match the settings (host %q)", row, d.hosts[f[1]])
		}
	}
}

func TestWriteMixClasses(t *testing.T) {
	f := writeTestMix(t, Mix{Seed: 1, Mailboxes: 500, Calls: 1000})
	got := map[MixClass]int{}
	for i, c := range f.Calls {
		got[c.Class]++
		if (i+1)%100 == 0 {
			for class, n := range map[MixClass]int{
				MixDivertedPilot: 60, MixDivertedMailbox: 20, MixDirectMailbox: 7, MixDirectPilot: 3,
				MixUnknownDiverted: 4, MixUnknownDirect: 4, MixBadLength: 1, MixBadCaller: 1,
			} {
				if got[class] != n*(i+1)/100 {
					t.Fatalf("after %d lines %d × %s, want %d", i+1, got[class], class, n*(i+1)/100)
				}
			}
		}
	}
	tests := []struct {
		name  string
		class MixClass
		check func(c MixCall) bool
	}{
		{name: "diverted to the pilot", class: MixDivertedPilot, check: func(c MixCall) bool {
			return c.Called == MixPilot && f.Mailboxes[c.Diverted] != "" && c.Reason != ""
		}},
		{name: "diverted to the mailbox", class: MixDivertedMailbox, check: func(c MixCall) bool {
			return c.Called == c.Diverted && f.Mailboxes[c.Diverted] != "" && c.Reason != ""
		}},
		{name: "direct to a mailbox", class: MixDirectMailbox, check: func(c MixCall) bool {
			return f.Mailboxes[c.Called] != "" && c.Reason == "" && c.Diverted == ""
		}},
		{name: "unknown diverted", class: MixUnknownDiverted, check: func(c MixCall) bool {
			return len(c.Diverted) == MixDigits && f.Mailboxes[c.Diverted] == "" && c.Diverted != MixPilot
		}},
		{name: "unknown direct", class: MixUnknownDirect, check: func(c MixCall) bool {
			return len(c.Called) == MixDigits && f.Mailboxes[c.Called] == "" && c.Called != MixPilot && c.Reason == ""
		}},
		{name: "bad length", class: MixBadLength, check: func(c MixCall) bool {
			return (len(c.Called) == 4 || len(c.Called) == 6) && c.Reason == ""
		}},
		{name: "bad caller", class: MixBadCaller, check: func(c MixCall) bool {
			return strings.HasPrefix(c.Caller, "restricted") && f.Mailboxes[c.Diverted] != ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, c := range f.Calls {
				if c.Class == tt.class && !tt.check(c) {
					t.Errorf("line %d: %+v", i+1, c)
				}
			}
		})
	}
}

// The same seed gives the same files, a longer mix starts with the shorter
// one, and another seed gives another mix.
func TestWriteMixDeterministic(t *testing.T) {
	short := writeTestMix(t, Mix{Seed: 42, Mailboxes: 300, Calls: 150})
	again := writeTestMix(t, Mix{Seed: 42, Mailboxes: 300, Calls: 150})
	long := writeTestMix(t, Mix{Seed: 42, Mailboxes: 300, Calls: 1000})
	other := writeTestMix(t, Mix{Seed: 43, Mailboxes: 300, Calls: 150})
	for _, name := range []string{"mix.toml", "mix.csv", "kamailio-db/" + MixKamailioTable} {
		a := readFile(t, filepath.Join(filepath.Dir(short.CSV), name))
		if b := readFile(t, filepath.Join(filepath.Dir(again.CSV), name)); !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs with seed 42", name)
		}
		if b := readFile(t, filepath.Join(filepath.Dir(other.CSV), name)); bytes.Equal(a, b) {
			t.Errorf("%s is the same with seeds 42 and 43", name)
		}
	}
	if a, b := readFile(t, short.Settings), readFile(t, long.Settings); !bytes.Equal(a, b) {
		t.Errorf("the directory depends on the number of calls")
	}
	if a, b := readFile(t, short.CSV), readFile(t, long.CSV); !bytes.HasPrefix(b, a) {
		t.Errorf("the 1000-call csv does not start with the 150-call csv")
	}
}

func TestWriteMixRefuses(t *testing.T) {
	tests := []struct {
		name string
		give Mix
	}{
		{name: "no calls", give: Mix{Calls: 0}},
		{name: "negative mailboxes", give: Mix{Mailboxes: -1, Calls: 1}},
		{name: "more mailboxes than leave unknown numbers", give: Mix{Mailboxes: MixMaxMailboxes + 1, Calls: 1}},
		{name: "more calls than callers", give: Mix{Calls: MixMaxCalls + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := WriteMix(dir, tt.give); !errors.Is(err, ErrInvalidMix) {
				t.Errorf("WriteMix(%+v) = %v, want %v", tt.give, err, ErrInvalidMix)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("WriteMix wrote %d files for a refused mix", len(entries))
			}
		})
	}
}

func TestWriteMixDefaults(t *testing.T) {
	f := writeTestMix(t, Mix{Calls: 10})
	if len(f.Mailboxes) != MixMailboxes {
		t.Errorf("%d mailboxes, want %d", len(f.Mailboxes), MixMailboxes)
	}
	if d := readMixSettings(t, f.Settings, "umrouter"); len(d.hosts) != MixMailboxes {
		t.Errorf("settings of instance umrouter hold %d mailboxes, want %d", len(d.hosts), MixMailboxes)
	}
}

func TestRenderMix(t *testing.T) {
	tests := []struct {
		name string
		give Run
		want []string
	}{
		{
			name: "udp",
			give: Run{Scenario: UACMix, Target: "127.0.0.1:5060"},
			want: []string{
				"INVITE sip:[field1]@127.0.0.1:5060 SIP/2.0",
				"Via: SIP/2.0/UDP [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-mix",
				"From: <sip:[field0]@[local_ip]:[local_port]>",
				`value="Diversion: &lt;sip:[field3]@[local_ip]&gt;;reason=[field2];counter=1"`,
				`<strcmp assign_to="contact_cmp" variable="contact_got" variable2="contact_want" check_it="true"/>`,
			},
		},
		{
			name: "tcp over ipv6",
			give: Run{Scenario: UACMix, Target: "[::1]:5060", Transport: "tcp"},
			want: []string{"INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0", "Via: SIP/2.0/TCP "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.give.Render()
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			got := string(b)
			for _, code := range mixCodes {
				tt.want = append(tt.want, fmt.Sprintf(`<recv response="%d" optional="true" response_txn="invite" next="ack">`, code),
					fmt.Sprintf(`<assignstr assign_to="code_got" value="%d"/>`, code))
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("rendered scenario lacks %q:\n%s", w, got)
				}
			}
			// The INVITE and the ACK carry the same branch.
			if n := strings.Count(got, ";branch=z9hG4bK-[pid]-[call_number]-mix\n"); n != 2 {
				t.Errorf("%d Via lines with the call's branch, want 2 (INVITE and ACK)", n)
			}
		})
	}
}

func TestMixRun(t *testing.T) {
	tests := []struct {
		name    string
		give    Run
		wantErr bool
		want    string // in the SIPp command line
	}{
		{name: "inject file passed absolute", give: Run{Scenario: UACMix, Target: "127.0.0.1:5060", Inject: "mix.csv"}, want: " -inf /"},
		{name: "no inject file", give: Run{Scenario: UACMix, Target: "127.0.0.1:5060"}, wantErr: true},
		{name: "tls", give: Run{Scenario: UACMix, Target: "127.0.0.1:5061", Transport: "tls", TLSCert: "c", TLSKey: "k", Inject: "mix.csv"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.give.withDefaults()
			err := r.validate()
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidRun) {
					t.Errorf("validate() = %v, want %v", err, ErrInvalidRun)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate() = %v", err)
			}
			args, err := r.args(t.TempDir(), "s.xml", r.Target, r.Transport)
			if err != nil {
				t.Fatalf("args() = %v", err)
			}
			if line := " " + strings.Join(args, " ") + " "; !strings.Contains(line, tt.want) || !strings.Contains(line, "mix.csv ") {
				t.Errorf("args %q lack %q…mix.csv", line, tt.want)
			}
		})
	}
}
