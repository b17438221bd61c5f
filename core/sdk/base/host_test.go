package base_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	basepb "github.com/umedge/umedge/core/sdk/base/proto"
)

// logLine is one Log call the fake host received.
type logLine struct {
	level slog.Level
	msg   string
	attrs []string // "key=value"
}

// fakeHost records what plugins send to the host services.
type fakeHost struct {
	mu     sync.Mutex
	lines  []logLine
	health []base.Health
}

func (h *fakeHost) Log(_ context.Context, level slog.Level, msg string, args ...any) error {
	r := slog.NewRecord(time.Time{}, level, msg, 0)
	r.Add(args...)
	l := logLine{level: level, msg: msg}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs = append(l.attrs, a.Key+"="+a.Value.String())
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, l)
	h.mu.Unlock()
	return nil
}

func (h *fakeHost) ReportHealth(_ context.Context, hl base.Health) error {
	h.mu.Lock()
	h.health = append(h.health, hl)
	h.mu.Unlock()
	return nil
}

// hostUser is a plugin that keeps the HostServices it is given.
type hostUser struct {
	fakePlugin
	mu    sync.Mutex
	hs    base.HostServices
	calls int // UseHost calls
}

func (p *hostUser) UseHost(hs base.HostServices) {
	p.mu.Lock()
	p.hs = hs
	p.calls++
	p.mu.Unlock()
}

func (p *hostUser) host() (base.HostServices, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hs, p.calls
}

// newHostPair connects a host that offers host (nil: nothing) to a plugin
// running impl; it returns the host's client and the plugin's server.
func newHostPair(t *testing.T, impl base.Plugin, host base.HostServices) (*base.Client, *plugin.GRPCServer) {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		base.PluginName: &base.GRPCPlugin{Impl: impl, Host: host},
	})
	t.Cleanup(func() {
		// Stop the server first: Close would otherwise ask it to stop
		// itself over the Controller service, which races with Stop.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(base.PluginName)
	if err != nil {
		t.Fatalf("Dispense() error = %v", err)
	}
	c, ok := raw.(*base.Client)
	if !ok {
		t.Fatalf("Dispense() = %T, want a *base.Client", raw)
	}
	return c, server
}

func TestHostServices(t *testing.T) {
	host := &fakeHost{}
	impl := &hostUser{}
	c, _ := newHostPair(t, impl, host)

	for range 2 {
		if err := c.Configure(t.Context(), []byte("x = 1\n")); err != nil {
			t.Fatalf("Configure() = %v", err)
		}
	}
	hs, calls := impl.host()
	if hs == nil || calls != 1 {
		t.Fatalf("UseHost called %d times, want once before Configure", calls)
	}

	tests := []struct {
		name string
		call func(ctx context.Context) error
		want logLine
	}{
		{name: "info with key-value args",
			call: func(ctx context.Context) error {
				return hs.Log(ctx, slog.LevelInfo, "mailbox store ready", "mailboxes", 12, "path", "/data/mail")
			},
			want: logLine{level: slog.LevelInfo, msg: "mailbox store ready", attrs: []string{"mailboxes=12", "path=/data/mail"}}},
		{name: "error with an attr",
			call: func(ctx context.Context) error {
				return hs.Log(ctx, slog.LevelError, "smtp down", slog.String("host", "mail.example.net"))
			},
			want: logLine{level: slog.LevelError, msg: "smtp down", attrs: []string{"host=mail.example.net"}}},
		{name: "custom level rounds down",
			call: func(ctx context.Context) error { return hs.Log(ctx, slog.LevelWarn+2, "slow") },
			want: logLine{level: slog.LevelWarn, msg: "slow"}},
		{name: "below debug is debug",
			call: func(ctx context.Context) error { return hs.Log(ctx, slog.LevelDebug-4, "trace") },
			want: logLine{level: slog.LevelDebug, msg: "trace"}},
		{name: "odd argument count",
			call: func(ctx context.Context) error { return hs.Log(ctx, slog.LevelInfo, "odd", "lonely") },
			want: logLine{level: slog.LevelInfo, msg: "odd", attrs: []string{"!BADKEY=lonely"}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); err != nil {
				t.Fatalf("Log() = %v", err)
			}
			host.mu.Lock()
			defer host.mu.Unlock()
			if len(host.lines) != i+1 {
				t.Fatalf("host got %d lines, want %d", len(host.lines), i+1)
			}
			if got := host.lines[i]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("host got %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("report health", func(t *testing.T) {
		reports := []base.Health{{Degraded: true, Reason: "mail store unreachable"}, {}}
		for _, r := range reports {
			if err := hs.ReportHealth(t.Context(), r); err != nil {
				t.Fatalf("ReportHealth(%+v) = %v", r, err)
			}
		}
		host.mu.Lock()
		defer host.mu.Unlock()
		if !reflect.DeepEqual(host.health, reports) {
			t.Errorf("host got %+v, want %+v", host.health, reports)
		}
	})
}

// failingHost refuses everything.
type failingHost struct{}

func (failingHost) Log(context.Context, slog.Level, string, ...any) error {
	return fmt.Errorf("log sink: %w", base.ErrUnavailable)
}
func (failingHost) ReportHealth(context.Context, base.Health) error { return errors.New("no status") }

func TestHostServicesErrors(t *testing.T) {
	impl := &hostUser{}
	c, _ := newHostPair(t, impl, failingHost{})
	if err := c.Configure(t.Context(), nil); err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	hs, _ := impl.host()
	if err := hs.Log(t.Context(), slog.LevelInfo, "x"); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Log() = %v, want errors.Is base.ErrUnavailable", err)
	}
	if err := hs.ReportHealth(t.Context(), base.Health{}); err == nil || err.Error() != "plugin: no status" {
		t.Errorf("ReportHealth() = %v, want the host's error", err)
	}
}

func TestNoHostServicesOffered(t *testing.T) {
	impl := &hostUser{}
	c, _ := newHostPair(t, impl, nil)
	if err := c.Configure(t.Context(), nil); err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	if _, calls := impl.host(); calls != 0 {
		t.Errorf("UseHost called %d times by a host that offers no services", calls)
	}
}

// drainer finishes its work after delay, or reports inFlight when ctx ends.
type drainer struct {
	fakePlugin
	delay    time.Duration
	inFlight int
	err      error
	deadline time.Duration // ctx deadline as seen by Drain, from its start
}

func (d *drainer) Drain(ctx context.Context) (int, error) {
	if dl, ok := ctx.Deadline(); ok {
		d.deadline = time.Until(dl)
	}
	if d.err != nil {
		return 0, d.err
	}
	select {
	case <-time.After(d.delay):
		return 0, nil
	case <-ctx.Done():
		return d.inFlight, ctx.Err()
	}
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name    string
		impl    base.Plugin
		timeout time.Duration
		want    base.DrainResult
		wantErr string
	}{
		{name: "no drainer is idle at once", impl: &fakePlugin{}, timeout: time.Second, want: base.DrainResult{Idle: true}},
		{name: "idle within the timeout", impl: &drainer{delay: 20 * time.Millisecond}, timeout: 2 * time.Second,
			want: base.DrainResult{Idle: true}},
		{name: "work left when the time is up", impl: &drainer{delay: time.Minute, inFlight: 3}, timeout: 50 * time.Millisecond,
			want: base.DrainResult{InFlight: 3}},
		{name: "plugin error", impl: &drainer{err: errors.New("stuck")}, timeout: time.Second, wantErr: "plugin: stuck"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newHostPair(t, tt.impl, nil)
			start := time.Now()
			got, err := c.Drain(t.Context(), tt.timeout)
			if took := time.Since(start); took > tt.timeout+time.Second {
				t.Errorf("Drain() took %v with a %v timeout", took, tt.timeout)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Drain() = %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Drain() = %v", err)
			}
			if got != tt.want {
				t.Errorf("Drain() = %+v, want %+v", got, tt.want)
			}
			if d, ok := tt.impl.(*drainer); ok && (d.deadline <= 0 || d.deadline > tt.timeout) {
				t.Errorf("Drain saw a deadline %v away, want within the %v timeout", d.deadline, tt.timeout)
			}
		})
	}
}

func TestKindOnTheWire(t *testing.T) {
	tests := []struct {
		give base.Kind
		want basepb.Kind
		back base.Kind // what the host reads back
	}{
		{give: base.KindRouter, want: basepb.Kind_KIND_ROUTER, back: base.KindRouter},
		{give: base.KindWorker, want: basepb.Kind_KIND_WORKER, back: base.KindWorker},
		{give: base.KindIntegration, want: basepb.Kind_KIND_INTEGRATION, back: base.KindIntegration},
		{give: "lync", want: basepb.Kind_KIND_UNSPECIFIED, back: ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.give), func(t *testing.T) {
			impl := &fakePlugin{info: &base.Info{Kind: tt.give, Name: "x", APIVersion: base.APIVersion}}
			client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
				base.PluginName: &base.GRPCPlugin{Impl: impl},
			})
			t.Cleanup(func() {
				server.Stop()
				_ = client.Close()
			})
			resp, err := basepb.NewBaseClient(client.Conn).Info(t.Context(), &basepb.InfoRequest{})
			if err != nil {
				t.Fatalf("Info() = %v", err)
			}
			if resp.GetKind() != tt.want {
				t.Errorf("wire kind = %v, want %v", resp.GetKind(), tt.want)
			}
			info, err := base.NewClient(client.Conn).Info(t.Context())
			if err != nil {
				t.Fatalf("Info() = %v", err)
			}
			if info.Kind != tt.back {
				t.Errorf("host reads kind %q, want %q", info.Kind, tt.back)
			}
		})
	}
}
