package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/pluginhost"
	"github.com/umedge/umedge/core/sdk/base"
)

// checkConfig is `edged config check`: the core's checks, then, when the
// plugin binaries are there, each plugin's check of its own settings.
// Every problem goes to stderr as FILE:LINE: key.path: message.
func checkConfig(ctx context.Context, path string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err == nil {
		err = checkPlugins(ctx, cfg)
	}
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

// checkPlugins is each plugin's check of its own settings in cfg, the
// problems joined, each tied to the key that holds its cause.
func checkPlugins(ctx context.Context, cfg *config.Config) error {
	host := newPluginHost(cfg, discardLogger())
	defer func() { _ = host.Close() }()
	// One plugin at a time, so each failure is tied to its plugin by the
	// spec it came from, not by searching the error text for a name.
	var problems []error
	for _, s := range pluginSpecs(cfg) {
		// Every instance runs the same binary with the same settings:
		// checking one says it all, and each problem once.
		one := s
		one.Instances = nil
		if err := host.Check(ctx, []pluginhost.Spec{one}); err != nil {
			problems = append(problems, specProblems(cfg, s, err)...)
		}
	}
	return errors.Join(problems...)
}

// printProblems prints each problem of err on a line of its own: the
// parts of joined errors one by one, a join inside a *config.FieldError
// included, each keeping its FILE:LINE: key.path (config.Problems). The
// causes inside one problem stay on its line, and a line break inside a
// message is shown escaped, so one line is always one whole problem.
func printProblems(w io.Writer, err error) {
	for _, p := range config.Problems(err) {
		fmt.Fprintln(w, oneLine(p.Error()))
	}
}

// oneLine escapes the control characters of s other than tab.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case isControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// specProblems ties what the plugin host says about spec s to the key of
// the config file that holds the cause, with that key's line: a plugin's
// refusal of its settings to the settings' keys, a pin that does not match
// to plugins.NAME.sha256 (or plugin_host.sha256sums when the pin is there),
// a missing binary to plugins.NAME.binary.
func specProblems(cfg *config.Config, s pluginhost.Spec, err error) []error {
	table := "plugins." + s.Name
	var ce *base.ConfigError
	if errors.As(err, &ce) {
		out := make([]error, 0, len(ce.Problems))
		for _, p := range ce.Problems {
			key := table + ".settings"
			if p.Path != "" {
				key += "." + p.Path
			}
			out = append(out, cfg.Problem(key, errors.New(p.Message)))
		}
		return out
	}
	var out []error
	for _, e := range config.Problems(err) {
		e = withoutPluginName(e, s.Name)
		out = append(out, cfg.Problem(specKey(cfg, s, e), e))
	}
	return out
}

// withoutPluginName drops the "plugin NAME: " that Host.Check puts in front
// of a cause: the key path now names the plugin.
func withoutPluginName(err error, name string) error {
	if cause := errors.Unwrap(err); cause != nil && err.Error() == "plugin "+name+": "+cause.Error() {
		return cause
	}
	return err
}

// specKey is the config key that the host's error err about s is about.
func specKey(cfg *config.Config, s pluginhost.Spec, err error) string {
	table := "plugins." + s.Name
	pinnedBySums := s.SHA256 == "" && cfg.PluginHost.SHA256Sums != ""
	var pe *fs.PathError
	switch {
	case errors.Is(err, pluginhost.ErrChecksumMismatch) && pinnedBySums,
		errors.Is(err, pluginhost.ErrBadSums):
		return "plugin_host.sha256sums"
	case errors.Is(err, pluginhost.ErrChecksumMismatch), errors.Is(err, pluginhost.ErrNoPin):
		return table + ".sha256"
	case errors.Is(err, pluginhost.ErrKindMismatch):
		return table + ".kind"
	case errors.Is(err, pluginhost.ErrAPIVersion):
		return table + ".binary"
	case errors.As(err, &pe) && pinnedBySums && pe.Path == cfg.PluginHost.SHA256Sums:
		return "plugin_host.sha256sums"
	case errors.As(err, &pe):
		return table + ".binary"
	}
	return table
}
