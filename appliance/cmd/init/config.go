package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/umedge/umedge/core/config"
)

// choice is the config the box runs with.
type choice struct {
	cfg  *config.Config
	path string // the file edged is pointed at
	err  error  // why the operator's file is not used; nil when it is
}

// chooseConfig loads the operator's file; when it is missing or does not
// load, the shipped default (safe: admin API on loopback, the listeners it
// ships with), and the reason is returned for the console and the log.
func chooseConfig(dataFile, defaultFile string) choice {
	cfg, err := config.Load(dataFile)
	if err == nil {
		return choice{cfg: cfg, path: dataFile}
	}
	def, derr := config.Load(defaultFile)
	if derr != nil {
		// The signed root's own file does not load: edged will say why
		// too; the built-in defaults still tell the init what to probe.
		d := config.Default()
		return choice{cfg: &d, path: defaultFile, err: errors.Join(err, fmt.Errorf("shipped config %s: %w", defaultFile, derr))}
	}
	return choice{cfg: def, path: defaultFile, err: err}
}

// pointAt makes link a symlink to target, replacing what was there in one
// rename: edged reads its config through link, so the init can move it
// from the shipped default to the operator's file without a restart.
func pointAt(link, target string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o750); err != nil {
		return fmt.Errorf("config link: %w", err)
	}
	tmp := link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("config link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("config link: %w", err)
	}
	return nil
}

// hostnameOf is appliance.hostname, or else the first label of sip.fqdn.
func hostnameOf(cfg *config.Config) string {
	if cfg.Appliance.Hostname != "" {
		return cfg.Appliance.Hostname
	}
	h, _, _ := strings.Cut(cfg.SIP.FQDN, ".")
	return h
}

// indent puts a prefix before every line of a multi-line error, so each
// line on the console says what it is about.
func indent(prefix string, err error) string {
	return prefix + strings.ReplaceAll(err.Error(), "\n", "\n"+prefix)
}
