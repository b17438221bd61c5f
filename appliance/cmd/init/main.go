// Command init is the umedge appliance's PID 1. It mounts the kernel's file
// systems and the data partition (GPT label "data", at /data; its layout is
// made on first boot), keeps the log in a ring persisted to /data/log,
// configures the network and the host firewall from the config, sets the
// clock by NTP, runs edged under supervision, reaps every orphan, keeps
// the hardware watchdog alive while edged is healthy, and blesses the
// booted slot once it is. A changed config is applied without a reboot.
//
// On the console it prints, for the operator and the image's boot tests,
// among others (every line starts with UMEDGE; appliance/README.md):
//
//	UMEDGE FIREWALL loaded rules=<n>   the ruleset is installed
//	UMEDGE READY slot=<a|b>            edged answers SIP OPTIONS and /healthz
//	UMEDGE BLESSED slot=<a|b>          the booted slot is kept
//	UMEDGE NETWORK ERROR <key>: <why>  a [network] setting not applied; the rest is
//	UMEDGE CONFIG ERROR <file>:<line>: <key>: <why>   the shipped config runs instead
//	UMEDGE DATA ERROR <why>            no data partition: a RAM disk, nothing kept
//	UMEDGE UNHEALTHY <why>             on trial: the reboot into the other slot
//
// The kernel passes no arguments to init; the flags are for tests, which
// run it as PID 1 of namespaces of their own. Kernel command line keys:
// appliance.slot=a|b (the booted slot), appliance.health_grace=<duration>
// (how long a slot on trial may take to become healthy before the box
// reboots into the other one; default 90s).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// options are the paths init works with; the defaults are the appliance's.
type options struct {
	console       string        // console device; "" = keep stdout and stderr
	dataDir       string        // where the data partition is mounted
	dataLabel     string        // its GPT label; "" = dataDir is used as it is
	espDir        string        // where the EFI system partition is mounted
	espLabel      string        // its GPT label; "" = no ESP, no bless
	defaultConfig string        // the shipped config on the read-only root
	configLink    string        // the symlink edged reads its config through
	edged         string        // the daemon
	resolvConf    string        // the resolvers file init writes
	cmdline       string        // the kernel command line
	efivars       string        // where efivarfs is mounted
	mounts        bool          // mount proc, sys, dev, run, tmp, efivarfs
	healthGrace   time.Duration // default of appliance.health_grace
}

func defaultOptions() options {
	return options{
		console:       "/dev/console",
		dataDir:       "/data",
		dataLabel:     "data",
		espDir:        "/boot",
		espLabel:      "ESP",
		defaultConfig: "/etc/umedge/umedge.toml",
		configLink:    "/run/umedge/umedge.toml",
		edged:         "/usr/bin/edged",
		resolvConf:    "/run/resolv.conf",
		cmdline:       "/proc/cmdline",
		efivars:       "/sys/firmware/efi/efivars",
		mounts:        true,
		healthGrace:   90 * time.Second,
	}
}

func main() {
	o := defaultOptions()
	fs := flag.NewFlagSet("init", flag.ExitOnError)
	fs.StringVar(&o.console, "console", o.console, "console `device`; empty keeps stdout and stderr")
	fs.StringVar(&o.dataDir, "data", o.dataDir, "data partition mount `dir`")
	fs.StringVar(&o.dataLabel, "data-label", o.dataLabel, "GPT `label` of the data partition; empty uses -data as it is")
	fs.StringVar(&o.espDir, "esp", o.espDir, "EFI system partition mount `dir`")
	fs.StringVar(&o.espLabel, "esp-label", o.espLabel, "GPT `label` of the ESP; empty means none (no bless)")
	fs.StringVar(&o.defaultConfig, "default-config", o.defaultConfig, "shipped config `file`")
	fs.StringVar(&o.configLink, "config-link", o.configLink, "symlink edged reads its config through")
	fs.StringVar(&o.edged, "edged", o.edged, "edged `binary`")
	fs.StringVar(&o.resolvConf, "resolv-conf", o.resolvConf, "resolvers `file` to write")
	fs.StringVar(&o.cmdline, "cmdline", o.cmdline, "kernel command line `file`")
	fs.StringVar(&o.efivars, "efivars", o.efivars, "efivarfs `dir`")
	fs.BoolVar(&o.mounts, "mounts", o.mounts, "mount proc, sys, dev, run, tmp and efivarfs")
	fs.DurationVar(&o.healthGrace, "health-grace", o.healthGrace, "time a slot on trial has to become healthy")
	_ = fs.Parse(os.Args[1:])
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: refusing to run: not PID 1 (it mounts file systems, owns the network and reboots the box); run it as PID 1 of its own namespaces to test it")
		os.Exit(1)
	}
	run(o) // reboots or powers off; never returns on the box
	os.Exit(0)
}
