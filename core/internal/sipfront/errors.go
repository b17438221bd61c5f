package sipfront

import (
	"errors"
	"fmt"

	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/sdk/router"
)

// ErrNoTLSConfig means a TLS listener was asked for without a TLS config.
var ErrNoTLSConfig = errors.New("sipfront: TLS listener without TLS configuration")

// status is a final response the Call Router sends instead of a redirect.
type status struct {
	code       int
	phrase     string // reason phrase of the status line
	reason     string // stable reason code for events and metrics (R-ERR-7)
	retryAfter bool
}

// errStatus maps a routing error to its SIP response: the one mapping
// between internal errors and SIP status codes (STYLE.md, error rule 4).
// It returns a pointer into the table, shared and never changed, so that
// an answer remembered for a retransmission costs one word.
func errStatus(err error) *status {
	for i := range statusMap {
		if errors.Is(err, statusMap[i].err) {
			return &statusMap[i].status
		}
	}
	return &internalError
}

var internalError = status{500, "Server Internal Error", "internal-error", false}

var statusMap = []struct {
	err    error
	status status
}{
	{router.ErrUnknownPeer, status{403, "Forbidden", router.ErrUnknownPeer.Error(), false}},
	{router.ErrGatewayDisabled, status{403, "Forbidden", router.ErrGatewayDisabled.Error(), false}},
	{router.ErrNoDialPlan, status{403, "Forbidden", router.ErrNoDialPlan.Error(), false}},
	{router.ErrGatewayDraining, status{503, "Service Unavailable", router.ErrGatewayDraining.Error(), true}},
	{router.ErrUnknownNumber, status{404, "Not Found", router.ErrUnknownNumber.Error(), false}},
	{router.ErrBadNumber, status{404, "Not Found", router.ErrBadNumber.Error(), false}},
	{router.ErrSecurityMismatch, status{488, "Not Acceptable Here", router.ErrSecurityMismatch.Error(), false}},
	{routing.ErrNoBackend, status{503, "Service Unavailable", routing.ErrNoBackend.Error(), true}},
	{routing.ErrRateLimited, status{503, "Service Unavailable", routing.ErrRateLimited.Error(), true}},
	{routing.ErrPluginUnavailable, status{503, "Service Unavailable", routing.ErrPluginUnavailable.Error(), true}},
	{routing.ErrOverloaded, status{503, "Service Unavailable", routing.ErrOverloaded.Error(), true}},
	{routing.ErrBadDecision, status{500, "Server Internal Error", routing.ErrBadDecision.Error(), false}},
}

// requestError is a request the front end refuses before routing (RFC 3261
// §8.2, RFC 4475): a 4xx/5xx with a reason an operator can act on.
type requestError struct {
	code   int
	phrase string // reason phrase of the status line
	detail string
	extra  []string // extra header lines, e.g. "Unsupported: foo"
}

func (e *requestError) Error() string { return fmt.Sprintf("%d %s: %s", e.code, e.phrase, e.detail) }

func bad(detail string, args ...any) *requestError {
	return &requestError{code: 400, phrase: "Bad Request", detail: fmt.Sprintf(detail, args...)}
}
