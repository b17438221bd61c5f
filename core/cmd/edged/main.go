// Command edged is the umedge appliance daemon: it loads the config, starts
// the plugins, and runs the SIP front end and the admin API.
//
// Usage:
//
//	edged [run] [-config FILE]    run the daemon (SIGHUP or POST /reload re-reads FILE)
//	edged config check FILE       check FILE, including every plugin's settings
//	edged import exchange EXPORT  turn an Exchange UM export into a config (0 complete, 1 warnings, 2 refused)
//	edged firewall print [-config FILE]  print the nftables ruleset of FILE
//	edged demo-pki DIR            write a throw-away CA and certificates for the demo config
//	edged version                 print the version
//	edged help                    print the usage (so do -h and --help)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/umedge/umedge/core/internal/devpki"
	"github.com/umedge/umedge/core/internal/telemetry"
)

// The names of the demo PKI, matching configs/umedge.toml.
const (
	demoServer  = "umedge.local"
	demoGateway = "gateway.umedge.local"
)

func main() {
	// The garbage of 20,000+ calls a second makes the heap grow to twice
	// what is live at Go's default GOGC=100. An appliance keeps memory
	// down instead: GOGC=50 took edged with a 10,000-mailbox directory
	// from 58–66 to 48–56 MiB peak RSS at 20,000–24,000 calls/s, for 5–20 %
	// more CPU per call (docs/PERFORMANCE.md). A routing table with proxy
	// pools moves it to 100 (gc.go: the B2BUA's ended calls). The GOGC
	// environment variable still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its inputs and outputs made explicit, for tests. Exit
// codes: 0 done, 1 failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	cmd, rest := commandOf(args)
	switch cmd {
	case "run":
		return runDaemon(rest, stdout, stderr)
	case "help":
		usage(stdout)
		return 0
	case "version":
		if len(rest) != 0 {
			return badUsage(stderr, "edged version takes no arguments")
		}
		fmt.Fprintln(stdout, "edged", telemetry.Version)
		return 0
	case "demo-pki":
		if len(rest) != 1 {
			return badUsage(stderr, "usage: edged demo-pki DIR")
		}
		f, err := devpki.Write(rest[0], demoServer, demoGateway)
		if err != nil {
			fmt.Fprintln(stderr, "edged:", err)
			return 1
		}
		fmt.Fprintf(stdout, "demo CA %s, server %s (%s), client %s (%s)\n",
			f.CA, f.ServerCert, demoServer, f.Clients[demoGateway].Cert, demoGateway)
		return 0
	case "import":
		if len(rest) == 0 || rest[0] != "exchange" {
			return badUsage(stderr, "usage: edged import exchange [-o FILE] [--report FILE] EXPORT...")
		}
		return importExchange(rest[1:], stdout, stderr)
	case "firewall":
		return firewallPrint(rest, stdout, stderr)
	case "config":
		if len(rest) != 2 || rest[0] != "check" {
			return badUsage(stderr, "usage: edged config check FILE")
		}
		return checkConfig(context.Background(), rest[1], stdout, stderr)
	default:
		return badUsage(stderr, fmt.Sprintf("edged: unknown command %q", cmd))
	}
}

// runDaemon is `edged run`: it starts edged and serves until SIGINT or
// SIGTERM; SIGHUP reloads the config.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs, o := runFlags(stderr)
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := start(ctx, o.config, o.store, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "edged:", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			d.log.Info("shutting down")
			if err := d.Close(); err != nil {
				d.log.Error("shutdown", "err", err)
				return 1
			}
			return 0
		case <-hup:
			if err := d.Reload(ctx); err != nil {
				d.log.Error("reload refused, the running config stays", "err", err)
			}
		}
	}
}
