package pluginhost

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/umedge/umedge/core/sdk/base"
)

// reportedPluginAttr is what a plugin's own "plugin" log attribute is
// renamed to, so that a line cannot claim to come from another plugin.
const reportedPluginAttr = "plugin_attr"

// hostServices is what one plugin process reaches through
// base.HostServices: log lines into the host's log, attributed to its
// instance, and its health report, shown in Status.
type hostServices struct {
	log *slog.Logger // with plugin=<instance name>

	mu     sync.Mutex
	health base.Health
}

var _ base.HostServices = (*hostServices)(nil)

func newHostServices(log *slog.Logger, name string) *hostServices {
	return &hostServices{log: log.With(pluginAttr, name)}
}

func (hs *hostServices) Log(ctx context.Context, level slog.Level, msg string, args ...any) error {
	if !hs.log.Enabled(ctx, level) {
		return nil
	}
	r := slog.NewRecord(time.Time{}, level, msg, 0)
	r.Add(args...)
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == pluginAttr {
			a.Key = reportedPluginAttr
		}
		attrs = append(attrs, a)
		return true
	})
	hs.log.LogAttrs(ctx, level, msg, attrs...)
	return nil
}

func (hs *hostServices) ReportHealth(ctx context.Context, h base.Health) error {
	hs.mu.Lock()
	was := hs.health
	hs.health = h
	hs.mu.Unlock()
	switch {
	case h.Degraded && was != h:
		hs.log.LogAttrs(ctx, slog.LevelWarn, "plugin reports degraded", slog.String("reason", h.Reason))
	case !h.Degraded && was.Degraded:
		hs.log.LogAttrs(ctx, slog.LevelInfo, "plugin reports healthy again")
	}
	return nil
}

// reported returns the last health report.
func (hs *hostServices) reported() base.Health {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.health
}
