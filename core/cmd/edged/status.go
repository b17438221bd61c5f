package main

import (
	"time"

	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/internal/telemetry"
)

// statusView is the admin API's /status document.
type statusView struct {
	Version   string        `json:"version"`
	Config    string        `json:"config"`
	Mode      string        `json:"mode"`
	Listeners []string      `json:"listeners"`
	Plugins   []pluginView  `json:"plugins"`
	Gateways  []gatewayView `json:"gateways"`
	Pools     []poolView    `json:"pools"`
	Routing   *routingView  `json:"routing,omitempty"`
}

type pluginView struct {
	Name           string    `json:"name"`
	Spec           string    `json:"spec"`
	Instance       string    `json:"instance,omitempty"`
	Kind           string    `json:"kind"`
	Plugin         string    `json:"plugin"`
	Version        string    `json:"version"`
	State          string    `json:"state"`
	Live           bool      `json:"live"`
	HealthFailures int       `json:"health_failures"`
	HungKills      int       `json:"hung_kills"`
	Degraded       string    `json:"degraded,omitempty"` // the plugin's own reason
	PID            int       `json:"pid"`
	Restarts       int       `json:"restarts"`
	LastError      string    `json:"last_error,omitempty"`
	Since          time.Time `json:"since"`
}

type gatewayView struct {
	Name           string     `json:"name"`
	Status         string     `json:"status"`
	Addresses      []string   `json:"addresses"`
	FQDN           string     `json:"fqdn,omitempty"`
	CallsPerSecond float64    `json:"calls_per_second,omitempty"`
	Probe          *probeView `json:"probe,omitempty"`
}

type poolView struct {
	Name     string        `json:"name"`
	Backends []backendView `json:"backends"`
}

type backendView struct {
	Name            string     `json:"name"`
	Host            string     `json:"host"`
	TCPPort         int        `json:"tcp_port"`
	TLSPort         int        `json:"tls_port"`
	UDPPort         int        `json:"udp_port,omitempty"`
	MaxCallsAllowed int        `json:"max_calls_allowed"`
	Healthy         bool       `json:"healthy"`
	Probe           *probeView `json:"probe,omitempty"` // nil: not probed, assumed healthy
}

// probeView is the OPTIONS health of one target (um-spec R-HLTH-1).
type probeView struct {
	Target     string    `json:"target"`
	Up         bool      `json:"up"`
	LastCode   int       `json:"last_code,omitempty"`
	LastRTT    string    `json:"last_rtt,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	LastChange time.Time `json:"last_change"`
	// The keep-alive's state (R-SBC-6): the current run of answers or
	// failures, the interval in force (slower while down when so set).
	ConsecutiveOK     int    `json:"consecutive_ok"`
	ConsecutiveFailed int    `json:"consecutive_failed"`
	Interval          string `json:"interval"`
	Probes            uint64 `json:"probes"`
	Failures          uint64 `json:"failures"`
}

// routingView is the routing table in force and what the engine did.
type routingView struct {
	Generation   uint64 `json:"generation"`
	DialPlans    int    `json:"dial_plans"`
	Mailboxes    int    `json:"mailboxes"`
	Decided      uint64 `json:"decided"`
	Asked        uint64 `json:"asked_plugin"`
	AskFailed    uint64 `json:"ask_failed"`
	AskQueueFull uint64 `json:"ask_queue_full"`
	AskQueued    int    `json:"ask_queued"`
	BadTables    uint64 `json:"bad_tables"`
}

// Status is the admin API's /status: listeners, plugins, gateways and
// back ends with their health.
func (d *daemon) Status() any {
	v := statusView{Version: telemetry.Version, Config: d.path, Mode: string(d.cfg.Load().SIP.Mode),
		Listeners: []string{}, Plugins: []pluginView{}, Gateways: []gatewayView{}, Pools: []poolView{}}
	for _, s := range d.host.Status() {
		pv := pluginView{Name: s.Name, Spec: s.Spec, Instance: s.Instance, Kind: string(s.Kind), Plugin: s.PluginName,
			Version: s.Version, State: string(s.State), Live: s.Live, HealthFailures: s.HealthFailures, HungKills: s.HungKills,
			PID: s.PID, Restarts: s.Restarts, LastError: s.LastError, Since: s.Since}
		if s.Degraded {
			pv.Degraded = s.DegradedReason
			if pv.Degraded == "" {
				pv.Degraded = "degraded"
			}
		}
		v.Plugins = append(v.Plugins, pv)
	}
	if d.engine == nil {
		return v
	}
	v.Listeners = d.front.Listeners()
	probes := map[string]health.TargetStatus{}
	for _, st := range d.prober.Status() {
		probes[st.Name] = st
	}
	probe := func(name string) *probeView {
		st, ok := probes[name]
		if !ok {
			return nil
		}
		pv := &probeView{Target: st.Addr + "/" + st.Transport, Up: st.Up, LastCode: st.LastCode, LastError: st.LastError, LastChange: st.LastChange,
			ConsecutiveOK: st.ConsecutiveOK, ConsecutiveFailed: st.ConsecutiveFailed, Interval: st.Interval.String(),
			Probes: st.Probes, Failures: st.Failures}
		if st.LastRTT > 0 {
			pv.LastRTT = st.LastRTT.String()
		}
		return pv
	}
	rs := d.engine.Stats()
	v.Routing = &routingView{Generation: rs.Generation, Decided: rs.Decided, Asked: rs.Asked, AskFailed: rs.AskFailed,
		AskQueueFull: rs.AskQueueFull, AskQueued: rs.AskQueued, BadTables: rs.BadTables}
	if t := d.engine.Table(); t != nil {
		v.Routing.DialPlans = len(t.DialPlans)
		for _, dp := range t.DialPlans {
			v.Routing.Mailboxes += len(dp.Mailboxes)
		}
		for _, g := range t.Gateways {
			gv := gatewayView{Name: g.Name, Status: string(g.Status), FQDN: g.FQDN, CallsPerSecond: g.CallsPerSecond,
				Addresses: []string{}, Probe: probe(routing.GatewayTarget(g.Name))}
			for _, a := range g.Addresses {
				gv.Addresses = append(gv.Addresses, a.String())
			}
			v.Gateways = append(v.Gateways, gv)
		}
		for _, p := range t.Pools {
			pv := poolView{Name: p.Name, Backends: []backendView{}}
			for _, b := range p.Backends {
				bv := backendView{Name: b.Name, Host: b.Host, TCPPort: b.TCPPort, TLSPort: b.TLSPort, UDPPort: b.UDPPort,
					MaxCallsAllowed: b.MaxCallsAllowed, Healthy: true}
				if b.Ping > 0 {
					bv.Probe = probe(routing.BackendTarget(p.Name, b.Name))
					bv.Healthy = bv.Probe != nil && bv.Probe.Up
				}
				pv.Backends = append(pv.Backends, bv)
			}
			v.Pools = append(v.Pools, pv)
		}
	}
	return v
}

// Calls is the admin API's /calls: the SBC's calls in progress.
func (d *daemon) Calls() any {
	if d.b2b == nil {
		return []b2bua.CallInfo{}
	}
	return d.b2b.Calls()
}
