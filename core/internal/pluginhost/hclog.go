package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is the slog level hclog's TRACE maps to (below slog.LevelDebug).
const levelTrace = slog.LevelDebug - 4

// pluginAttr is the slog attribute that names the plugin instance in every
// record the adapter writes. go-plugin itself logs a "plugin" argument (the
// binary path); the adapter renames that one to binaryAttr.
const (
	pluginAttr = "plugin"
	binaryAttr = "plugin_binary"
)

// hclogAdapter implements hclog.Logger over a *slog.Logger so that go-plugin
// and the plugins' own log lines end up in the core's structured log.
type hclogAdapter struct {
	sl      *slog.Logger
	name    string
	implied []any
	// level is shared by all loggers derived from one root, as hclog
	// requires of SetLevel. hclog.NoLevel defers to the slog handler.
	level *atomic.Int32
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHCLog returns an hclog.Logger that writes to sl, with the attribute
// plugin=pluginName on every record.
func newHCLog(sl *slog.Logger, pluginName string) *hclogAdapter {
	var lv atomic.Int32
	return &hclogAdapter{sl: sl.With(pluginAttr, pluginName), level: &lv}
}

// slogLevel maps an hclog level to a slog level.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel, DefaultLevel
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	if floor := hclog.Level(a.level.Load()); floor != hclog.NoLevel && l < floor {
		return false
	}
	return a.sl.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)/2+len(args)/2)
	if a.name != "" {
		attrs = append(attrs, slog.String("logger", a.name))
	}
	attrs = appendKV(attrs, a.implied)
	attrs = appendKV(attrs, args)
	a.sl.Log(context.Background(), slogLevel(level), msg, attrs...)
}

// appendKV turns hclog's alternating key/value arguments into slog attrs.
func appendKV(attrs []any, kv []any) []any {
	for i := 0; i < len(kv); i += 2 {
		if i+1 == len(kv) {
			attrs = append(attrs, slog.Any("EXTRA_VALUE_AT_END", hclogValue(kv[i])))
			break
		}
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		if key == pluginAttr {
			key = binaryAttr
		}
		attrs = append(attrs, slog.Any(key, hclogValue(kv[i+1])))
	}
	return attrs
}

// hclogValue renders hclog's special value types.
func hclogValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	case error:
		return v.Error()
	default:
		return v
	}
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

// GetLevel returns the level set with SetLevel or, when none was set, the
// lowest level the slog handler accepts.
func (a *hclogAdapter) GetLevel() hclog.Level {
	if l := hclog.Level(a.level.Load()); l != hclog.NoLevel {
		return l
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.sl.Enabled(context.Background(), slogLevel(l)) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{a: a, opts: *opts}
}

// stdWriter feeds lines written by a standard library logger into the adapter.
type stdWriter struct {
	a    *hclogAdapter
	opts hclog.StandardLoggerOptions
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		level, msg := w.classify(string(bytes.TrimRight(line, "\r")))
		w.a.Log(level, msg)
	}
	return len(p), nil
}

// levelPrefixes are the "[LEVEL]" prefixes hclog infers levels from.
var levelPrefixes = []struct {
	prefix string
	level  hclog.Level
}{
	{"[TRACE]", hclog.Trace},
	{"[DEBUG]", hclog.Debug},
	{"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn},
	{"[ERROR]", hclog.Error},
	{"[ERR]", hclog.Error},
}

func (w *stdWriter) classify(line string) (hclog.Level, string) {
	level, msg := hclog.Info, line
	search := line
	if w.opts.InferLevelsWithTimestamp {
		if i := strings.IndexByte(line, '['); i > 0 {
			search = line[i:]
		}
	}
	for _, lp := range levelPrefixes {
		if strings.HasPrefix(search, lp.prefix) {
			level, msg = lp.level, strings.TrimSpace(search[len(lp.prefix):])
			break
		}
	}
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		return w.opts.ForceLevel, msg
	case w.opts.InferLevels:
		return level, msg
	default:
		return hclog.Info, line
	}
}
