package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// sipClient is one target's private SIP stack. Each target owns its own, so
// that stopping a target (or resetting it after a failure) closes exactly
// its sockets and reader goroutines and nothing else.
type sipClient struct {
	ua     *sipgo.UserAgent
	client *sipgo.Client
}

func (p *Prober) newSIPClient() (*sipClient, error) {
	sipLog := p.log.With("component", "sipgo")
	uaOpts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("umedge"),
		sipgo.WithUserAgentHostname(p.cfg.FromHost),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			// A TCP/TLS peer that drops the connection fails the probe at
			// once instead of at the timeout.
			sip.WithTransactionLayerTerminateOnConnClose(),
		),
	}
	if p.cfg.TLS != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(p.cfg.TLS))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		return nil, fmt.Errorf("create sip user agent: %w", err)
	}
	client, err := sipgo.NewClient(ua,
		sipgo.WithClientLogger(sipLog),
		// Via sent-by is our FQDN with the socket's port filled in by the
		// transport; rport (RFC 3581) lets the peer answer through NAT.
		sipgo.WithClientHostname(p.cfg.FromHost),
		sipgo.WithClientNAT(),
	)
	if err != nil {
		_ = ua.Close()
		return nil, fmt.Errorf("create sip client: %w", err)
	}
	return &sipClient{ua: ua, client: client}, nil
}

// closeClient closes the target's SIP stack, if any.
func (t *target) closeClient() error {
	if t.client == nil {
		return nil
	}
	err := t.client.ua.Close()
	t.client = nil
	if err != nil {
		return fmt.Errorf("close sip client: %w", err)
	}
	return nil
}

// probe sends one OPTIONS request and classifies the outcome. It runs only
// on the target's goroutine.
func (t *target) probe(ctx context.Context, p *Prober) result {
	if t.client == nil {
		c, err := p.newSIPClient()
		if err != nil {
			return result{err: err}
		}
		t.client = c
	}

	req := newOptions(t.spec, p.cfg.FromHost)
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()

	start := time.Now()
	res, err := t.client.client.Do(pctx, req)
	rtt := time.Since(start)
	if err != nil {
		// The client and its pooled connection are kept: sipgo drops a
		// TCP/TLS connection the peer closed or reset, and the next probe
		// dials again. A peer that stays connected but silent is down
		// anyway, and answers on the same connection once it recovers.
		switch {
		case ctx.Err() != nil:
			return result{err: ctx.Err()}
		case pctx.Err() != nil:
			return result{err: fmt.Errorf("%w within %s", ErrTimeout, p.cfg.Timeout)}
		default:
			return result{err: transportError(err)}
		}
	}
	if res.StatusCode >= 500 && res.StatusCode <= 599 {
		return result{code: res.StatusCode, rtt: rtt,
			err: fmt.Errorf("%w: %d %s", ErrUnavailable, res.StatusCode, res.Reason)}
	}
	return result{code: res.StatusCode, rtt: rtt}
}

// transportError wraps a sipgo error at our boundary. When the cause is a
// socket error, its text replaces sipgo's wording.
func transportError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("%w: %w", ErrTransport, oe)
	}
	return fmt.Errorf("%w: %s", ErrTransport, err.Error())
}

// newOptions builds a probe per RFC 3261 §11: a fresh Call-ID, From tag,
// CSeq and Via branch every time, Max-Forwards 70 and Accept:
// application/sdp. spec has been validated, so Addr splits cleanly.
func newOptions(spec Target, fromHost string) *sip.Request {
	host, portStr, _ := net.SplitHostPort(spec.Addr)
	port, _ := strconv.Atoi(portStr)

	ruri := sip.Uri{Scheme: "sip", Host: host, Port: port}
	if spec.Transport != TransportUDP {
		ruri.UriParams = sip.NewParams()
		ruri.UriParams.Add("transport", spec.Transport)
	}
	req := sip.NewRequest(sip.OPTIONS, ruri)

	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: fromHost}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: host, Port: port}}
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	// Call-ID, CSeq and Via with a new branch are added by the client.

	req.SetTransport(strings.ToUpper(spec.Transport))
	req.SetDestination(spec.Addr)
	return req
}
