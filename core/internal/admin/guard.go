package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// guard refuses what a web page could make a browser on the box send, and
// mutating calls without the token:
//
//   - every request must name this server in Host: 127.0.0.1, [::1] or
//     localhost, the host of Config.Listen, or the address the connection
//     arrived at, each with the listener's port. A page whose name was
//     rebound to 127.0.0.1 (DNS rebinding) sends its own name and is
//     refused; an IP literal cannot be rebound.
//   - a mutating call (any method but GET, HEAD, OPTIONS) must not come
//     from another origin: an Origin header must be this server's origin
//     and a Sec-Fetch-Site header must say same-origin (CSRF). It must
//     also carry no body or a JSON one, so no HTML form and no fetch
//     without a CORS preflight (which this server never grants) can make
//     it: forms send urlencoded, multipart or text/plain bodies. The
//     firmware upload's body is application/octet-stream instead, for
//     the same reason (checkFirmware), and it always needs the token.
//     GET and PUT /config always need the token too (checkConfigFile);
//     the upload's body is application/toml or application/octet-stream.
//   - a mutating call needs "Authorization: Bearer TOKEN" when a token is
//     set, and is refused outright on a listener that is not loopback-only
//     without one. The token is compared in constant time, never logged.
type guard struct {
	listenHost   string // host part of Config.Listen; "" means every address
	port         int    // the listener's port
	loopbackOnly bool
	token        func() ([]byte, error)
	log          *slog.Logger
}

func newGuard(cfg Config, log *slog.Logger) (*guard, error) {
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Listen, err)
	}
	g := &guard{listenHost: host, token: cfg.Token, log: log}
	if ip, err := netip.ParseAddr(host); err == nil {
		g.loopbackOnly = ip.Unmap().IsLoopback()
	} else {
		g.loopbackOnly = strings.EqualFold(host, "localhost")
	}
	return g, nil
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.check(r); err != nil {
			g.log.Debug("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			status := statusOf(err)
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="umedge admin"`)
			}
			http.Error(w, err.Error(), status)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *guard) check(r *http.Request) error {
	if err := g.checkHost(r); err != nil {
		return err
	}
	if r.URL.Path == ConfigPath {
		return g.checkConfigFile(r)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := checkSameOrigin(r); err != nil {
		return err
	}
	if r.URL.Path == FirmwarePath {
		return g.checkFirmware(r)
	}
	if err := checkContentType(r); err != nil {
		return err
	}
	return g.checkToken(r)
}

// checkFirmware guards the firmware upload. Its body is the bundle, sent
// as application/octet-stream: a type no form can send and no page can
// without a CORS preflight. It always needs the token: a process on the
// box (a plugin, say) reaches loopback too, and an upload replaces the
// software the box runs next, even though only a bundle signed by a
// trusted key installs.
func (g *guard) checkFirmware(r *http.Request) error {
	if err := checkUploadType(r, "application/octet-stream"); err != nil {
		return err
	}
	return g.requireToken(r, errFirmwareNoToken)
}

// checkConfigFile guards GET and PUT /config by the firmware upload's
// rule: the token always, on loopback too, since the file names the paths
// of secrets and an upload changes what the box does at once. A PUT must
// also come from this origin, with the TOML as application/toml or
// application/octet-stream (types that need a CORS preflight).
func (g *guard) checkConfigFile(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if err := checkSameOrigin(r); err != nil {
			return err
		}
		if err := checkUploadType(r, "application/toml", "application/octet-stream"); err != nil {
			return err
		}
	}
	return g.requireToken(r, errConfigNoToken)
}

// checkUploadType wants one Content-Type, one of allowed.
func checkUploadType(r *http.Request, allowed ...string) error {
	types := r.Header.Values("Content-Type")
	if len(types) != 1 {
		return fmt.Errorf("%w: the upload needs one Content-Type %s, got %d", errContentType, strings.Join(allowed, " or "), len(types))
	}
	if mt, _, err := mime.ParseMediaType(types[0]); err != nil || !slices.Contains(allowed, mt) {
		return fmt.Errorf("%w: the upload takes %s, not %q", errContentType, strings.Join(allowed, " or "), types[0])
	}
	return nil
}

// requireToken is checkToken where no token set is no way through, on
// loopback too: the refusal is then noToken.
func (g *guard) requireToken(r *http.Request, noToken error) error {
	if g.token == nil {
		return noToken
	}
	tok, err := g.token()
	if err != nil {
		g.log.Error("admin token unreadable, call refused", "path", r.URL.Path, "err", err)
		return errTokenUnavailable
	}
	if len(tok) == 0 {
		return noToken
	}
	return g.checkToken(r)
}

func (g *guard) checkHost(r *http.Request) error {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil { // no port: http's default
		host, port = strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]"), "80"
	}
	if port != strconv.Itoa(g.port) || !g.hostAllowed(host, r) {
		return fmt.Errorf("%w: %q", errHost, r.Host)
	}
	return nil
}

var (
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loopback6 = netip.IPv6Loopback()
)

func (g *guard) hostAllowed(host string, r *http.Request) bool {
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil { // a name: only the one the listener was configured with
		return g.listenHost != "" && strings.EqualFold(host, g.listenHost)
	}
	ip = ip.Unmap()
	if ip == loopback4 || ip == loopback6 {
		return true
	}
	if ip.IsUnspecified() {
		return false
	}
	if l, err := netip.ParseAddr(g.listenHost); err == nil && l.Unmap() == ip {
		return true
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(la.IP); ok && a.Unmap() == ip {
			return true
		}
	}
	return false
}

// checkSameOrigin refuses a mutating call a page of another origin made.
func checkSameOrigin(r *http.Request) error {
	for _, site := range r.Header.Values("Sec-Fetch-Site") {
		if site != "same-origin" {
			return fmt.Errorf("%w: Sec-Fetch-Site %q", errCrossSite, site)
		}
	}
	for _, origin := range r.Header.Values("Origin") {
		u, err := url.Parse(origin)
		if err != nil || u.Scheme != "http" || u.User != nil || u.Path != "" || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("%w: Origin %q", errCrossSite, origin)
		}
	}
	return nil
}

// checkContentType allows no body, or a JSON one: both need a CORS
// preflight when a page sends them with a content type, and a form can
// send neither.
func checkContentType(r *http.Request) error {
	types := r.Header.Values("Content-Type")
	const want = "a mutating call takes no body, or a JSON one"
	switch {
	case len(types) > 1:
		return fmt.Errorf("%w: %s, not %d Content-Type headers", errContentType, want, len(types))
	case len(types) == 0 || types[0] == "":
		if r.ContentLength != 0 {
			return fmt.Errorf("%w: %s, not a body without Content-Type", errContentType, want)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(types[0])
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: %s, not %q", errContentType, want, types[0])
	}
	return nil
}

// checkToken compares the bearer token in constant time: both sides are
// hashed first, so neither the content nor the length leaks through timing.
func (g *guard) checkToken(r *http.Request) error {
	var want []byte
	if g.token != nil {
		tok, err := g.token()
		if err != nil {
			g.log.Error("admin token unreadable, mutating call refused", "err", err)
			return errTokenUnavailable
		}
		want = tok
	}
	if len(want) == 0 {
		if g.loopbackOnly {
			return nil
		}
		return errNoToken
	}
	scheme, given, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errUnauthorized
	}
	gh, wh := sha256.Sum256([]byte(strings.TrimLeft(given, " "))), sha256.Sum256(want)
	if subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
		return errUnauthorized
	}
	return nil
}
