package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/umedge/umedge/core/internal/exchimport"
)

// importExchange is `edged import exchange`: it reads an Exchange UM
// export and writes the config to -o or stdout, the report to stderr and,
// with --report, as JSON. Exit status 0 complete, 1 usable with warnings,
// 2 refused (no config written) or bad usage.
func importExchange(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edged import exchange", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the config to `FILE` instead of standard output")
	report := fs.String("report", "", "also write the report as JSON to `FILE`")
	sep := fs.String("list-sep", "|", "the `SEPARATOR` of multi-valued CSV columns")
	fs.Usage = func() {} // printed below, to the right stream
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: edged import exchange [-o FILE] [--report FILE] [--list-sep SEP] EXPORT...")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return 0
		}
		usage(stderr) // after the flag package's message
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "edged import exchange: name at least one export file")
		usage(stderr)
		return 2
	}
	im := exchimport.New(exchimport.Options{ListSep: *sep})
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			im.AddError(name, err)
			continue
		}
		_ = im.Add(f, name) // a refusal is in the report
		f.Close()
	}
	res := im.Finish()
	status := res.Report.ExitStatus
	if res.Config != nil {
		if err := writeOut(*out, res.Config, stdout); err != nil {
			fmt.Fprintln(stderr, "edged import exchange:", err)
			return 2
		}
	}
	if *report != "" {
		if err := writeFileAtomic(*report, func(w io.Writer) error { return res.Report.WriteJSON(w) }); err != nil {
			fmt.Fprintln(stderr, "edged import exchange:", err)
			return 2
		}
	}
	if err := res.Report.WriteText(stderr); err != nil {
		return 2
	}
	return status
}

func writeOut(name string, data []byte, stdout io.Writer) error {
	if name == "" || name == "-" {
		_, err := stdout.Write(data)
		return err
	}
	return writeFileAtomic(name, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// writeFileAtomic writes name through a temporary file beside it, so that
// a failed import never leaves half a file behind.
func writeFileAtomic(name string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename; left over when writing failed
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
