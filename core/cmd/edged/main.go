// Command edged is the umedge appliance daemon: it loads the config, starts
// the plugins, and runs the SIP front end and the admin API.
//
// Usage:
//
//	edged [-config FILE]          run the daemon (SIGHUP reloads FILE)
//	edged config check FILE       check FILE, including every plugin's settings
//	edged demo-pki DIR            write a throw-away CA and certificates for the demo config
//	edged version                 print the version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its inputs and outputs made explicit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "edged", telemetry.Version)
			return 0
		case "demo-pki":
			if len(args) != 2 {
				fmt.Fprintln(stderr, "usage: edged demo-pki DIR")
				return 2
			}
			f, err := devpki.Write(args[1], demoServer, demoGateway)
			if err != nil {
				fmt.Fprintln(stderr, "edged:", err)
				return 1
			}
			fmt.Fprintf(stdout, "demo CA %s, server %s (%s), client %s (%s)\n",
				f.CA, f.ServerCert, demoServer, f.Clients[demoGateway].Cert, demoGateway)
			return 0
		case "config":
			if len(args) != 3 || args[1] != "check" {
				fmt.Fprintln(stderr, "usage: edged config check FILE")
				return 2
			}
			return checkConfig(context.Background(), args[2], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("edged", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/umedge/umedge.toml", "the TOML config `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := start(ctx, *path, stderr)
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
