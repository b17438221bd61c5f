package base

import (
	"fmt"
	"log/slog"
	"time"

	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// kinds maps each Kind to its wire enum; the one table drives both
// directions.
var kinds = []struct {
	kind Kind
	pb   basepb.Kind
}{
	{KindRouter, basepb.Kind_KIND_ROUTER},
	{KindWorker, basepb.Kind_KIND_WORKER},
	{KindIntegration, basepb.Kind_KIND_INTEGRATION},
}

// kindToProto returns KIND_UNSPECIFIED for a Kind the wire has no value for.
func kindToProto(k Kind) basepb.Kind {
	for _, e := range kinds {
		if e.kind == k {
			return e.pb
		}
	}
	return basepb.Kind_KIND_UNSPECIFIED
}

// kindFromProto returns "" for KIND_UNSPECIFIED and a Kind naming the
// number for a value this SDK does not know, so that the host's kind check
// refuses it with a readable message.
func kindFromProto(k basepb.Kind) Kind {
	if k == basepb.Kind_KIND_UNSPECIFIED {
		return ""
	}
	for _, e := range kinds {
		if e.pb == k {
			return e.kind
		}
	}
	return Kind(fmt.Sprintf("unknown(%d)", int32(k)))
}

func infoToProto(i *Info) *basepb.InfoResponse {
	return &basepb.InfoResponse{
		Kind:       kindToProto(i.Kind),
		Name:       i.Name,
		Version:    i.Version,
		ApiVersion: int32(i.APIVersion),
	}
}

func infoFromProto(r *basepb.InfoResponse) *Info {
	return &Info{
		Kind:       kindFromProto(r.GetKind()),
		Name:       r.GetName(),
		Version:    r.GetVersion(),
		APIVersion: int(r.GetApiVersion()),
	}
}

func problemsToProto(ps []Problem) []*basepb.Problem {
	out := make([]*basepb.Problem, len(ps))
	for i, p := range ps {
		out[i] = &basepb.Problem{Path: p.Path, Message: p.Message}
	}
	return out
}

// configErrorFromProto returns nil when there are no problems.
func configErrorFromProto(ps []*basepb.Problem) error {
	if len(ps) == 0 {
		return nil
	}
	ce := &ConfigError{Problems: make([]Problem, len(ps))}
	for i, p := range ps {
		ce.Problems[i] = Problem{Path: p.GetPath(), Message: p.GetMessage()}
	}
	return ce
}

// logLevels maps slog levels to the wire enum, lowest first.
var logLevels = []struct {
	level slog.Level
	pb    basepb.LogLevel
}{
	{slog.LevelDebug, basepb.LogLevel_LOG_LEVEL_DEBUG},
	{slog.LevelInfo, basepb.LogLevel_LOG_LEVEL_INFO},
	{slog.LevelWarn, basepb.LogLevel_LOG_LEVEL_WARN},
	{slog.LevelError, basepb.LogLevel_LOG_LEVEL_ERROR},
}

// logLevelToProto rounds a level down to the nearest wire level (a custom
// level between Info and Warn is sent as Info); below Debug is Debug.
func logLevelToProto(l slog.Level) basepb.LogLevel {
	out := basepb.LogLevel_LOG_LEVEL_DEBUG
	for _, e := range logLevels {
		if l >= e.level {
			out = e.pb
		}
	}
	return out
}

// logLevelFromProto logs unspecified and unknown levels at Info.
func logLevelFromProto(l basepb.LogLevel) slog.Level {
	for _, e := range logLevels {
		if e.pb == l {
			return e.level
		}
	}
	return slog.LevelInfo
}

func attrsToProto(args []any) []*basepb.Attr {
	r := slog.NewRecord(time.Time{}, 0, "", 0)
	r.Add(args...)
	out := make([]*basepb.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		out = append(out, &basepb.Attr{Key: a.Key, Value: a.Value.Resolve().String()})
		return true
	})
	return out
}

func attrsFromProto(as []*basepb.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.String(a.GetKey(), a.GetValue())
	}
	return out
}

func healthToProto(h Health) *basepb.ReportHealthRequest {
	st := basepb.HealthStatus_HEALTH_STATUS_OK
	if h.Degraded {
		st = basepb.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	return &basepb.ReportHealthRequest{Status: st, Reason: h.Reason}
}

func healthFromProto(r *basepb.ReportHealthRequest) Health {
	return Health{Degraded: r.GetStatus() == basepb.HealthStatus_HEALTH_STATUS_DEGRADED, Reason: r.GetReason()}
}
