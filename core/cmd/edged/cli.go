package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/umedge/umedge/appliance/firewall"
	"github.com/umedge/umedge/core/config"
)

// defaultConfig is where the appliance keeps its config.
const defaultConfig = "/etc/umedge/umedge.toml"

// commands lists edged's subcommands for usage, in order.
var commands = []struct{ synopsis, what string }{
	{"edged [run] [-config FILE]", "run the daemon; SIGHUP or POST /reload re-reads FILE"},
	{"edged config check FILE", "check FILE, including every plugin's settings; exit 1 with every problem"},
	{"edged import exchange EXPORT...", "turn an Exchange UM export into a config (-o FILE, --report FILE); exit 0 complete, 1 warnings, 2 refused"},
	{"edged firewall print [-config FILE]", "print the nftables ruleset the appliance installs for FILE"},
	{"edged demo-pki DIR", "write a throw-away CA and certificates for the demo config"},
	{"edged version", "print the version"},
	{"edged help", "print this help (so do -h and --help)"},
}

// usage prints the subcommands and the flags of run.
func usage(w io.Writer) {
	fmt.Fprintln(w, "edged is the umedge appliance daemon.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-36s %s\n", c.synopsis, c.what)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags of run:")
	fs, _ := runFlags(w)
	fs.PrintDefaults()
}

// runOpts are the flags of `edged run`.
type runOpts struct {
	config string
	// store is the file PUT /config writes; "" = the file config is (its
	// symlinks resolved). The appliance's init points config at a link to
	// the config in force and store at /data/umedge.toml, so that an upload
	// reaches the operator's file also while the shipped one runs (the
	// operator's did not load); the init applies it when it changes.
	store string
}

// runFlags is the flag set of `edged run`, writing its errors to w.
func runFlags(w io.Writer) (*flag.FlagSet, *runOpts) {
	fs := flag.NewFlagSet("edged run", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {} // parseFlags prints the usage, to the right stream
	var o runOpts
	fs.StringVar(&o.config, "config", defaultConfig, "the TOML config `FILE`")
	fs.StringVar(&o.store, "config-store", "", "the `FILE` PUT /config writes (default: the -config file, symlinks resolved); "+
		"when it is not the file in force, an upload is written and not reloaded")
	return fs, &o
}

// parseFlags parses args into fs. When it returns false the command is
// over, with the exit code returned: 0 after -h (usage on stdout), 2 after
// a bad flag or a stray argument (usage on stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return 0, false
	case err != nil: // the flag package has said what was wrong
		fmt.Fprintln(stderr)
		usage(stderr)
		return 2, false
	case fs.NArg() > 0:
		return badUsage(stderr, fmt.Sprintf("edged: unexpected argument %q", fs.Arg(0))), false
	}
	return 0, true
}

// commandOf splits args into the subcommand and its arguments. Flags
// first, or nothing at all, mean run; -h and --help mean help.
func commandOf(args []string) (string, []string) {
	if len(args) == 0 {
		return "run", nil
	}
	switch a := args[0]; {
	case a == "-h" || a == "-help" || a == "--help":
		return "help", args[1:]
	case strings.HasPrefix(a, "-"):
		return "run", args
	default:
		return a, args[1:]
	}
}

// badUsage prints msg and the usage to w and returns exit code 2.
func badUsage(w io.Writer, msg string) int {
	fmt.Fprintln(w, msg)
	fmt.Fprintln(w)
	usage(w)
	return 2
}

// firewallPrint is `edged firewall print [-config FILE]`: the ruleset that
// appliance/firewall generates for FILE, in nft syntax.
func firewallPrint(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "print" {
		return badUsage(stderr, "usage: edged firewall print [-config FILE]")
	}
	fs := flag.NewFlagSet("edged firewall print", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	file := fs.String("config", defaultConfig, "the TOML config `FILE`")
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, "edged:", err)
		return 1
	}
	rs, err := firewall.FromConfig(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "edged:", err)
		return 1
	}
	fmt.Fprint(stdout, rs)
	return 0
}
