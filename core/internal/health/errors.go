package health

import "errors"

var (
	// ErrInvalidConfig means New was given a Config it cannot work with.
	ErrInvalidConfig = errors.New("health: invalid config")
	// ErrInvalidTarget means a Target cannot be probed as configured; Set
	// keeps such a target down and reports the reason in its status.
	ErrInvalidTarget = errors.New("health: invalid target")
	// ErrNoTLSConfig means a "tls" target was configured but Config.TLS is nil.
	ErrNoTLSConfig = errors.New("health: tls target but no client TLS config")
	// ErrTimeout means no final response arrived within Config.Timeout.
	ErrTimeout = errors.New("health: no response to OPTIONS")
	// ErrUnavailable means the peer answered OPTIONS with a 5xx response, so
	// it is reachable but must not be given calls (R-WK-3, R-ERR-3).
	ErrUnavailable = errors.New("health: peer answered unavailable")
	// ErrTransport means the OPTIONS request could not be sent or its
	// connection failed (refused, reset, TLS handshake, DNS).
	ErrTransport = errors.New("health: transport error")
)
