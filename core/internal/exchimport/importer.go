package exchimport

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Importer collects the objects of one or more export files and maps them
// onto an edged config. Objects are kept in the small form the mapping
// needs, so an export of any size is read once, as it streams by.
type Importer struct {
	opts    Options
	rep     Report
	objs    map[string][]*Object // the few configuration objects, by kind
	mboxes  []*mailbox
	refused bool
}

// New returns an Importer.
func New(opts Options) *Importer {
	return &Importer{opts: opts, objs: map[string][]*Object{}}
}

// Add reads one export file. An input that is refused or broken is
// recorded as an error of the report and returned; the import then ends
// with ExitRefused.
func (im *Importer) Add(r io.Reader, name string) error {
	in, err := Read(r, name, im.opts, im.take, func(w Warning) { im.warn(w.Path, "%s", w.Message) })
	im.rep.Inputs = append(im.rep.Inputs, in)
	if err != nil {
		im.refused = true
		msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrRefused.Error()+": "), ErrMalformed.Error()+": ")
		p := name
		if strings.HasPrefix(msg, name) { // the message names the file, and the line
			p = ""
		}
		im.rep.Errors = append(im.rep.Errors, Warning{Path: p, Message: msg})
		return err
	}
	return nil
}

// AddError records a failure to open an input.
func (im *Importer) AddError(name string, err error) {
	im.refused = true
	im.rep.Errors = append(im.rep.Errors, Warning{Path: name, Message: err.Error()})
}

func (im *Importer) take(o *Object) error {
	if o.Kind == KindMailbox {
		im.mboxes = append(im.mboxes, newMailbox(o))
		return nil
	}
	im.objs[o.Kind] = append(im.objs[o.Kind], o)
	return nil
}

func (im *Importer) warn(path, format string, args ...any) {
	im.rep.Warnings = append(im.rep.Warnings, Warning{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (im *Importer) fail(path, format string, args ...any) {
	im.rep.Errors = append(im.rep.Errors, Warning{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Result is the outcome of an import: the config (nil when refused) and
// the report.
type Result struct {
	Config []byte
	Report *Report
	// Keys are the config keys the config sets or shows commented out,
	// with named tables as * (plugins.umrouter.settings.gateways.*.status).
	Keys map[string]bool
}

// Finish maps everything read onto the config.
func (im *Importer) Finish() *Result {
	res := &Result{Report: &im.rep}
	if !im.refused {
		m := newMapping(im)
		m.run()
		if len(im.rep.Errors) == 0 {
			res.Config = []byte(m.w.b.String())
			res.Keys = m.w.keys
		}
	}
	im.rep.sort()
	switch {
	case len(im.rep.Errors) > 0:
		im.rep.ExitStatus = ExitRefused
		res.Config = nil
	case len(im.rep.Warnings) > 0:
		im.rep.ExitStatus = ExitWarnings
	default:
		im.rep.ExitStatus = ExitComplete
	}
	return res
}

// IsRefused reports whether err is a refusal of an input.
func IsRefused(err error) bool { return errors.Is(err, ErrRefused) || errors.Is(err, ErrMalformed) }
