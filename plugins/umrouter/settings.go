package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/base"
)

// settings is the plugin's TOML table (README.md, Configuration), decoded but
// not yet validated. Map keys are the table names.
type settings struct {
	Gateways   map[string]*gatewaySettings
	HuntGroups map[string]*huntGroupSettings
	DialPlans  map[string]*dialPlanSettings
	Mailboxes  map[string]*mailboxSettings
	Pools      map[string]*poolSettings
}

// gatewaySettings is one [gateways.<name>] table: a UM IP gateway.
type gatewaySettings struct {
	Addresses          []string
	FQDN               string
	Status             string
	CallsPerSecond     float64
	MaxConcurrentCalls int
	OptionsInterval    time.Duration
	OptionsTarget      string
	OptionsTransport   string
}

// huntGroupSettings is one [hunt_groups.<name>] table.
type huntGroupSettings struct {
	Gateway  string
	Pilot    string
	DialPlan string
}

// dialPlanSettings is one [dial_plans.<name>] table.
type dialPlanSettings struct {
	URIType         string
	ExtensionDigits int
	VoIPSecurity    string
	AccessNumbers   []string
	Pool            string
}

// mailboxSettings is one [mailboxes.<name>] table.
type mailboxSettings struct {
	Extension string
	DialPlan  string
	E164      string
	SIPUser   string
	Pool      string
}

// poolSettings is one [pools.<name>] table.
type poolSettings struct {
	Action          string
	OptionsInterval time.Duration
	Backends        []*backendSettings
}

// backendSettings is one [[pools.<name>.backends]] entry.
type backendSettings struct {
	Name            string
	Host            string
	TCPPort         int
	TLSPort         int
	UDPPort         int
	MaxCallsAllowed int
}

// Defaults of the keys whose default is not the zero value.
const (
	defaultStatus           = "Enabled"
	defaultOptionsTransport = "udp"
	defaultURIType          = "TelExtn"
	defaultVoIPSecurity     = "Unsecured"
	defaultTCPPort          = 5062 // UM service SIP/TCP, R-PORT-2
	defaultTLSPort          = 5063 // UM service SIP/TLS, R-PORT-2
	defaultMaxCallsAllowed  = 100  // Exchange MaxCallsAllowed default, R-WK-3
)

// problems collects every problem found in one settings table.
type problems struct {
	list []base.Problem
	// undecodable holds the paths whose value could not be decoded, so that
	// validation does not report the same key a second time.
	undecodable map[string]bool
}

// add records a validation problem, unless the value at path could not be
// decoded and has been reported already.
func (p *problems) add(path, format string, args ...any) {
	if p.undecodable[path] {
		return
	}
	p.list = append(p.list, base.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// decodeFailed records a value that could not be decoded.
func (p *problems) decodeFailed(path, format string, args ...any) {
	p.add(path, format, args...)
	if p.undecodable == nil {
		p.undecodable = make(map[string]bool)
	}
	p.undecodable[path] = true
}

// err returns the problems as a *base.ConfigError sorted by path, or nil.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := slices.Clone(p.list)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	return &base.ConfigError{Problems: list}
}

// decodeSettings parses the TOML bytes of the plugin's table. It decodes the
// document generically and walks it key by key, so that it can report every
// unknown key and every value of the wrong type with its path, not just the
// first one a reflective decoder trips over.
func decodeSettings(data []byte, p *problems) *settings {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.decodeFailed(pe.LastKey, "invalid toml at line %d: %s", pe.Position.Line, pe.Message)
		} else {
			p.decodeFailed("", "invalid toml: %v", err)
		}
		return nil
	}
	s := &settings{}
	d := decoder{p: p}
	d.table("", doc, fields{
		"gateways":    d.named(func(name, path string, v any) { s.Gateways = put(s.Gateways, name, d.gateway(path, v)) }),
		"hunt_groups": d.named(func(name, path string, v any) { s.HuntGroups = put(s.HuntGroups, name, d.huntGroup(path, v)) }),
		"dial_plans":  d.named(func(name, path string, v any) { s.DialPlans = put(s.DialPlans, name, d.dialPlan(path, v)) }),
		"mailboxes":   d.named(func(name, path string, v any) { s.Mailboxes = put(s.Mailboxes, name, d.mailbox(path, v)) }),
		"pools":       d.named(func(name, path string, v any) { s.Pools = put(s.Pools, name, d.pool(path, v)) }),
	})
	return s
}

func put[T any](m map[string]T, k string, v T) map[string]T {
	if m == nil {
		m = make(map[string]T)
	}
	m[k] = v
	return m
}

func (d *decoder) gateway(path string, v any) *gatewaySettings {
	g := &gatewaySettings{Status: defaultStatus, OptionsTransport: defaultOptionsTransport}
	d.table(path, v, fields{
		"addresses":            d.stringList(&g.Addresses),
		"fqdn":                 d.str(&g.FQDN),
		"status":               d.str(&g.Status),
		"calls_per_second":     d.float(&g.CallsPerSecond),
		"max_concurrent_calls": d.integer(&g.MaxConcurrentCalls),
		"options_interval":     d.duration(&g.OptionsInterval),
		"options_target":       d.str(&g.OptionsTarget),
		"options_transport":    d.str(&g.OptionsTransport),
	})
	return g
}

func (d *decoder) huntGroup(path string, v any) *huntGroupSettings {
	h := &huntGroupSettings{}
	d.table(path, v, fields{
		"gateway":   d.str(&h.Gateway),
		"pilot":     d.str(&h.Pilot),
		"dial_plan": d.str(&h.DialPlan),
	})
	return h
}

func (d *decoder) dialPlan(path string, v any) *dialPlanSettings {
	dp := &dialPlanSettings{URIType: defaultURIType, VoIPSecurity: defaultVoIPSecurity}
	d.table(path, v, fields{
		"uri_type":         d.str(&dp.URIType),
		"extension_digits": d.integer(&dp.ExtensionDigits),
		"voip_security":    d.str(&dp.VoIPSecurity),
		"access_numbers":   d.stringList(&dp.AccessNumbers),
		"pool":             d.str(&dp.Pool),
	})
	return dp
}

func (d *decoder) mailbox(path string, v any) *mailboxSettings {
	m := &mailboxSettings{}
	d.table(path, v, fields{
		"extension": d.str(&m.Extension),
		"dial_plan": d.str(&m.DialPlan),
		"e164":      d.str(&m.E164),
		"sip_user":  d.str(&m.SIPUser),
		"pool":      d.str(&m.Pool),
	})
	return m
}

func (d *decoder) pool(path string, v any) *poolSettings {
	ps := &poolSettings{}
	d.table(path, v, fields{
		"action":           d.str(&ps.Action),
		"options_interval": d.duration(&ps.OptionsInterval),
		"backends": func(path string, v any) {
			d.tables(path, v, func(path string, v any) {
				b := &backendSettings{TCPPort: defaultTCPPort, TLSPort: defaultTLSPort, MaxCallsAllowed: defaultMaxCallsAllowed}
				d.table(path, v, fields{
					"name":              d.str(&b.Name),
					"host":              d.str(&b.Host),
					"tcp_port":          d.integer(&b.TCPPort),
					"tls_port":          d.integer(&b.TLSPort),
					"udp_port":          d.integer(&b.UDPPort),
					"max_calls_allowed": d.integer(&b.MaxCallsAllowed),
				})
				ps.Backends = append(ps.Backends, b)
			})
		},
	})
	return ps
}

// decoder walks a generically decoded TOML document.
type decoder struct{ p *problems }

// fields maps the keys a table may hold to their decoders.
type fields map[string]func(path string, v any)

// table decodes the table v key by key, in sorted order; a key that is not
// in fs is a problem.
func (d *decoder) table(path string, v any, fs fields) {
	m, ok := v.(map[string]any)
	if !ok {
		d.p.decodeFailed(path, "must be a table, not %s", typeName(v))
		return
	}
	for _, k := range sortedKeys(m) {
		kp := joinPath(path, k)
		f, ok := fs[k]
		if !ok {
			d.p.decodeFailed(kp, "unknown key")
			continue
		}
		f(kp, m[k])
	}
}

// named decodes a table of named tables such as [gateways.<name>].
func (d *decoder) named(each func(name, path string, v any)) func(string, any) {
	return func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			d.p.decodeFailed(path, "must be a table, not %s", typeName(v))
			return
		}
		for _, k := range sortedKeys(m) {
			kp := joinPath(path, k)
			if strings.TrimSpace(k) == "" {
				d.p.decodeFailed(kp, "name must not be blank")
				continue
			}
			each(k, kp, m[k])
		}
	}
}

// tables decodes an array of tables; entry i has the path "path[i]".
func (d *decoder) tables(path string, v any, each func(path string, v any)) {
	var list []any
	switch t := v.(type) {
	case []map[string]any:
		for _, m := range t {
			list = append(list, m)
		}
	case []any:
		list = t
	default:
		d.p.decodeFailed(path, "must be an array of tables, not %s", typeName(v))
		return
	}
	for i, e := range list {
		each(fmt.Sprintf("%s[%d]", path, i), e)
	}
}

func (d *decoder) str(dst *string) func(string, any) {
	return func(path string, v any) {
		s, ok := v.(string)
		if !ok {
			d.p.decodeFailed(path, "must be a string, not %s", typeName(v))
			return
		}
		*dst = s
	}
}

func (d *decoder) stringList(dst *[]string) func(string, any) {
	return func(path string, v any) {
		list, ok := v.([]any)
		if !ok {
			d.p.decodeFailed(path, "must be an array of strings, not %s", typeName(v))
			return
		}
		out := make([]string, 0, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				// Keep the indices of the rest: validation reports by index.
				d.p.decodeFailed(fmt.Sprintf("%s[%d]", path, i), "must be a string, not %s", typeName(e))
			}
			out = append(out, s)
		}
		*dst = out
	}
}

func (d *decoder) integer(dst *int) func(string, any) {
	return func(path string, v any) {
		n, ok := v.(int64)
		if !ok {
			d.p.decodeFailed(path, "must be an integer, not %s", typeName(v))
			return
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			d.p.decodeFailed(path, "%d is out of range", n)
			return
		}
		*dst = int(n)
	}
}

func (d *decoder) float(dst *float64) func(string, any) {
	return func(path string, v any) {
		switch n := v.(type) {
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) {
				d.p.decodeFailed(path, "must be a finite number")
				return
			}
			*dst = n
		case int64:
			*dst = float64(n)
		default:
			d.p.decodeFailed(path, "must be a number, not %s", typeName(v))
		}
	}
}

// duration decodes a Go duration string such as "30s" or "1m30s".
func (d *decoder) duration(dst *time.Duration) func(string, any) {
	return func(path string, v any) {
		s, ok := v.(string)
		if !ok {
			d.p.decodeFailed(path, "must be a duration string such as \"30s\", not %s", typeName(v))
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.p.decodeFailed(path, "must be a duration such as \"30s\", not %q", s)
			return
		}
		*dst = dur
	}
}

// typeName names the TOML type of a generically decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	default:
		return "a date or time"
	}
}

// joinPath appends key to a dotted key path, quoting it as TOML would when
// it is not a bare key.
func joinPath(path, key string) string {
	k := toml.Key{key}.String()
	if path == "" {
		return k
	}
	return path + "." + k
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
