package sipptest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The benchmark mix: real-looking Call Router traffic for a voice-mail
// directory, written by WriteMix and placed by the UACMix scenario.
//
// The directory is one TelExtn dial plan "mix" with 5-digit extensions
// (MixDigits), Mix.Mailboxes mailboxes (default 10,000) drawn from
// 10000..79999, and the subscriber-access pilot 80000 (MixPilot), behind
// one gateway "mix" at 127.0.0.1 (SIPp's source address) with a hunt
// group for the pilot and a catch-all. Each mailbox lives in pool mix-a
// (back end 127.0.0.1, the dial plan's pool) or mix-b (127.0.0.2), about
// half each, so a 302's Contact host shows which mailbox was looked up.
//
// Every CSV line is one call from a caller no other line uses (+4989 and 8
// digits, an affine permutation of the line number). In every block of 100
// lines, shuffled:
//
//	80 diverted to voice mail: Diversion names a directory mailbox
//	   60 with the pilot as Request-URI, 20 with the mailbox itself   → 302
//	10 direct: 7 to a mailbox extension, 3 to the pilot                → 302
//	 9 unknown numbers: 4 diverted from a 5-digit extension that is no
//	   mailbox, 4 direct to one, 1 direct to a 4- or 6-digit number    → 404
//	 1 non-numeric caller ("restricted" and 8 digits), diverted for a
//	   real mailbox: the TelExtn plan refuses the caller (bad-number)  → 404
//
// The answers are umrouter's (core/sdk/router/decide.go): call answering,
// direct voice mail and subscriber access are 302 with Contact
// <sip:RURI-user@HOST:5062;transport=tcp>, HOST the back end of the
// mailbox's pool (the dial plan's for the pilot); unknown-number and
// bad-number are 404. No line expects 403: from one source address SIPp
// cannot be an unknown peer, and a non-numeric caller is a bad number.
const (
	// MixDigits is the extension length of the mix's dial plan.
	MixDigits = 5
	// MixPilot is the subscriber-access number of the mix; diverted calls
	// mostly arrive on it.
	MixPilot = "80000"
	// MixMailboxes is the default directory size.
	MixMailboxes = 10000
	// MixMaxMailboxes leaves 10,000 of the 70,000 extensions for unknown
	// numbers.
	MixMaxMailboxes = 60000
	// MixMaxCalls is the number of distinct callers the caller scheme has.
	MixMaxCalls = 100_000_000
	// MixKamailioTable is the db_text table (file) of the Kamailio
	// directory: htable rows key_name = extension, key_value = back-end host.
	MixKamailioTable = "mailboxes"
	// MixBackendPort is the back ends' tcp_port, in every expected Contact
	// (the Call Router moves UDP calls to TCP).
	MixBackendPort = 5062
)

// The mix's pools and their back-end hosts.
const (
	mixPoolA, mixHostA = "mix-a", "127.0.0.1" // the dial plan's pool
	mixPoolB, mixHostB = "mix-b", "127.0.0.2"
	mixExtLo, mixExtN  = 10000, 70000 // extensions 10000..79999
)

// MixClass is the kind of call a mix line is.
type MixClass string

// The classes of the mix and their share of every 100 lines.
const (
	MixDivertedPilot   MixClass = "diverted-pilot"   // 60: Diversion: mailbox, Request-URI: pilot → 302
	MixDivertedMailbox MixClass = "diverted-mailbox" // 20: Diversion and Request-URI: the mailbox → 302
	MixDirectMailbox   MixClass = "direct-mailbox"   // 7: Request-URI: a mailbox → 302
	MixDirectPilot     MixClass = "direct-pilot"     // 3: Request-URI: the pilot → 302 (subscriber access)
	MixUnknownDiverted MixClass = "unknown-diverted" // 4: Diversion: an extension that is no mailbox → 404
	MixUnknownDirect   MixClass = "unknown-direct"   // 4: Request-URI: an extension that is no mailbox → 404
	MixBadLength       MixClass = "bad-length"       // 1: Request-URI: 4 or 6 digits → 404
	MixBadCaller       MixClass = "bad-caller"       // 1: non-numeric From user → 404
)

// mixBlock is one block of 100 lines before it is shuffled.
var mixBlock = func() []MixClass {
	var b []MixClass
	for _, c := range []struct {
		class MixClass
		n     int
	}{
		{MixDivertedPilot, 60}, {MixDivertedMailbox, 20}, {MixDirectMailbox, 7}, {MixDirectPilot, 3},
		{MixUnknownDiverted, 4}, {MixUnknownDirect, 4}, {MixBadLength, 1}, {MixBadCaller, 1},
	} {
		for range c.n {
			b = append(b, c.class)
		}
	}
	return b
}()

// diversionReasons are RFC 5806 reasons a PBX gives when it diverts a call
// to voice mail.
var diversionReasons = []string{"no-answer", "user-busy", "unconditional"}

// Mix says what WriteMix writes. The same Seed and Mailboxes give the same
// directory, and the first n lines of any mix with them are the same.
type Mix struct {
	Seed      uint64
	Mailboxes int    // directory size; 0 = MixMailboxes, at most MixMaxMailboxes
	Calls     int    // CSV lines, one call each; 1..MixMaxCalls
	Instance  string // router plugin instance in the settings' TOML paths; "" = "umrouter"
}

// MixCall is one line of the mix: what SIPp sends and what must come back.
type MixCall struct {
	Class    MixClass
	Caller   string // From user
	Called   string // Request-URI and To user
	Reason   string // Diversion reason; "" = no Diversion header
	Diverted string // Diversion user
	Code     int    // expected final status: 302 or 404
	Contact  string // expected Contact "user@host:port" of a 302; "" otherwise
}

// MixFiles are the files WriteMix wrote and what they hold.
type MixFiles struct {
	// Settings is TOML for edged: the [plugins.<instance>.settings.*]
	// tables of the directory, in umrouter's schema. It can be appended to
	// a config that declares [plugins.<instance>].
	Settings string
	// KamailioDB is a db_text directory with the table MixKamailioTable
	// (and "version"), for an htable with dbtable=MixKamailioTable.
	KamailioDB string
	// CSV is the SIPp injection file (Run.Inject) for UACMix, SEQUENTIAL,
	// one line per call: caller;called;reason;diverted;code;contact.
	CSV string
	// Pilot is the subscriber-access number and PilotHost the back end of
	// the dial plan's pool: the Contact host of calls to the pilot.
	Pilot, PilotHost string
	// Mailboxes maps each directory extension to its back-end host.
	Mailboxes map[string]string
	// Calls is the expected answer for each CSV line, in order.
	Calls []MixCall
}

// WriteMix writes the mix m into dir: the directory as edged settings
// (mix.toml) and as a Kamailio db_text table (kamailio-db/), and the SIPp
// injection file (mix.csv). It returns the paths and every line's
// expected answer.
func WriteMix(dir string, m Mix) (*MixFiles, error) {
	if m.Mailboxes == 0 {
		m.Mailboxes = MixMailboxes
	}
	if m.Instance == "" {
		m.Instance = "umrouter"
	}
	if m.Mailboxes < 1 || m.Mailboxes > MixMaxMailboxes || m.Calls < 1 || m.Calls > MixMaxCalls {
		return nil, fmt.Errorf("%w: %d mailboxes (1..%d), %d calls (1..%d)",
			ErrInvalidMix, m.Mailboxes, MixMaxMailboxes, m.Calls, MixMaxCalls)
	}
	rng := rand.New(rand.NewPCG(m.Seed, m.Seed^0x9e3779b97f4a7c15))
	f := &MixFiles{
		Settings:   filepath.Join(dir, "mix.toml"),
		KamailioDB: filepath.Join(dir, "kamailio-db"),
		CSV:        filepath.Join(dir, "mix.csv"),
		Pilot:      MixPilot,
		PilotHost:  mixHostA,
		Mailboxes:  make(map[string]string, m.Mailboxes),
	}

	// The directory: the first m.Mailboxes of a permutation of the
	// extensions; the rest are the unknown numbers.
	perm := rng.Perm(mixExtN)
	exts := make([]string, m.Mailboxes)
	for i := range exts {
		exts[i] = strconv.Itoa(mixExtLo + perm[i])
		f.Mailboxes[exts[i]] = []string{mixHostA, mixHostB}[rng.IntN(2)]
	}
	unknown := perm[m.Mailboxes:]
	sort.Strings(exts)
	if err := writeMixSettings(f.Settings, m, exts, f.Mailboxes); err != nil {
		return nil, err
	}
	if err := writeMixKamailioDB(f.KamailioDB, exts, f.Mailboxes); err != nil {
		return nil, err
	}

	// The calls. Callers are (a*i + b) mod 10^8 with a coprime to 10^8, a
	// bijection, so no two lines share one.
	a := 1 + 2*rng.Uint64N(MixMaxCalls/2)
	for a%5 == 0 {
		a = 1 + 2*rng.Uint64N(MixMaxCalls/2)
	}
	b := rng.Uint64N(MixMaxCalls)
	block := make([]MixClass, len(mixBlock))
	f.Calls = make([]MixCall, m.Calls)
	for i := range f.Calls {
		if i%len(block) == 0 {
			copy(block, mixBlock)
			rng.Shuffle(len(block), func(x, y int) { block[x], block[y] = block[y], block[x] })
		}
		caller := fmt.Sprintf("%08d", (a*uint64(i)+b)%MixMaxCalls)
		f.Calls[i] = mixCall(rng, block[i%len(block)], caller, exts, unknown, f.Mailboxes)
	}
	if err := writeMixCSV(f.CSV, f.Calls); err != nil {
		return nil, err
	}
	return f, nil
}

// mixCall builds one line of class c for the caller digits.
func mixCall(rng *rand.Rand, c MixClass, digits string, exts []string, unknown []int, hosts map[string]string) MixCall {
	mailbox := exts[rng.IntN(len(exts))]
	other := strconv.Itoa(mixExtLo + unknown[rng.IntN(len(unknown))])
	reason := diversionReasons[rng.IntN(len(diversionReasons))]
	call := MixCall{Class: c, Caller: "+4989" + digits, Code: 302}
	switch c {
	case MixDivertedPilot:
		call.Called, call.Reason, call.Diverted = MixPilot, reason, mailbox
	case MixDivertedMailbox:
		call.Called, call.Reason, call.Diverted = mailbox, reason, mailbox
	case MixDirectMailbox:
		call.Called = mailbox
	case MixDirectPilot:
		call.Called = MixPilot
	case MixUnknownDiverted:
		call.Called, call.Reason, call.Diverted, call.Code = MixPilot, reason, other, 404
	case MixUnknownDirect:
		call.Called, call.Code = other, 404
	case MixBadLength:
		n := 1000 + rng.IntN(9000) // 4 digits
		if rng.IntN(2) == 1 {
			n = 100000 + rng.IntN(900000) // 6 digits
		}
		call.Called, call.Code = strconv.Itoa(n), 404
	case MixBadCaller:
		call.Caller = "restricted" + digits
		call.Called, call.Reason, call.Diverted, call.Code = MixPilot, reason, mailbox, 404
	}
	if call.Code == 302 {
		host := mixHostA // subscriber access: the dial plan's pool
		if call.Diverted != "" {
			host = hosts[call.Diverted]
		} else if call.Called != MixPilot {
			host = hosts[call.Called]
		}
		call.Contact = fmt.Sprintf("%s@%s:%d", call.Called, host, MixBackendPort)
	}
	return call
}

// writeMixSettings writes the directory in umrouter's schema
// (plugins/umrouter/README.md).
func writeMixSettings(path string, m Mix, exts []string, hosts map[string]string) error {
	var sb strings.Builder
	p := "plugins." + m.Instance + ".settings"
	fmt.Fprintf(&sb, `# The sipptest mix directory (seed %d): %d mailboxes with %d-digit
# extensions in one TelExtn dial plan, subscriber access on %s, one gateway
# at 127.0.0.1. Generated by sipptest.WriteMix; do not edit.

[%[5]s.gateways.mix]
addresses = ["127.0.0.1"]

[%[5]s.hunt_groups.mix-pilot]
gateway = "mix"
pilot = %[4]q
dial_plan = "mix"

[%[5]s.hunt_groups.mix-all]
gateway = "mix"
pilot = ""
dial_plan = "mix"

[%[5]s.dial_plans.mix]
uri_type = "TelExtn"
extension_digits = %[3]d
voip_security = "Unsecured"
access_numbers = [%[4]q]
pool = %[6]q
`, m.Seed, len(exts), MixDigits, MixPilot, p, mixPoolA)
	for _, pool := range []struct{ name, host string }{{mixPoolA, mixHostA}, {mixPoolB, mixHostB}} {
		fmt.Fprintf(&sb, `
[%[1]s.pools.%[2]s]
options_interval = "0s"

[[%[1]s.pools.%[2]s.backends]]
name = "um-%[2]s"
host = %[3]q
tcp_port = %[4]d
max_calls_allowed = 0
`, p, pool.name, pool.host, MixBackendPort)
	}
	for _, e := range exts {
		fmt.Fprintf(&sb, "\n[%s.mailboxes.mb%s]\nextension = %q\ndial_plan = \"mix\"\n", p, e, e)
		if hosts[e] == mixHostB {
			fmt.Fprintf(&sb, "pool = %q\n", mixPoolB)
		}
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("write mix settings: %w", err)
	}
	return nil
}

// writeMixKamailioDB writes the directory as db_text tables for Kamailio's
// htable module: key_name the extension, key_value the back-end host.
func writeMixKamailioDB(dir string, exts []string, hosts map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write kamailio directory: %w", err)
	}
	var sb strings.Builder
	sb.WriteString("id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)\n")
	for i, e := range exts {
		fmt.Fprintf(&sb, "%d:%s:0:0:%s:0\n", i+1, e, hosts[e])
	}
	version := "table_name(string) table_version(int)\n" + MixKamailioTable + ":2\n"
	for name, content := range map[string]string{MixKamailioTable: sb.String(), "version": version} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write kamailio directory: %w", err)
		}
	}
	return nil
}

// writeMixCSV writes the SIPp injection file. SIPp splits fields at ';'
// and knows no escapes; no field holds one.
func writeMixCSV(path string, calls []MixCall) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write mix csv: %w", err)
	}
	// A bufio.Writer keeps its first error and Flush returns it.
	w := bufio.NewWriterSize(file, 1<<20)
	_, _ = w.WriteString("SEQUENTIAL\n")
	for _, c := range calls {
		contact := c.Contact
		if contact == "" {
			contact = "-"
		}
		_, _ = w.WriteString(c.Caller + ";" + c.Called + ";" + c.Reason + ";" + c.Diverted + ";" +
			strconv.Itoa(c.Code) + ";" + contact + "\n")
	}
	if err := w.Flush(); err != nil {
		file.Close()
		return fmt.Errorf("write mix csv: %w", err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("write mix csv: %w", err)
	}
	return nil
}
