package admin

import (
	"errors"
	"net/http"
)

// Why the guard refused a request. The client reads the text.
var (
	errHost             = errors.New("admin: Host is not this server's address")
	errCrossSite        = errors.New("admin: cross-site request refused")
	errContentType      = errors.New("admin: Content-Type refused")
	errUnauthorized     = errors.New("admin: missing or wrong bearer token")
	errNoToken          = errors.New("admin: the listener is not loopback-only and no admin.token_file is set, so mutating calls are refused")
	errTokenUnavailable = errors.New("admin: the admin token cannot be read")
	errFirmwareNoToken  = errors.New("admin: firmware upload needs a bearer token, also on loopback, and no admin.token_file is set")
	errConfigNoToken    = errors.New("admin: the config file's download and upload need a bearer token, also on loopback, and no admin.token_file is set")
)

// refusalStatus is the one mapping from a refusal to its HTTP status.
var refusalStatus = []struct {
	err    error
	status int
}{
	{errHost, http.StatusMisdirectedRequest},
	{errCrossSite, http.StatusForbidden},
	{errContentType, http.StatusUnsupportedMediaType},
	{errUnauthorized, http.StatusUnauthorized},
	{errNoToken, http.StatusForbidden},
	{errFirmwareNoToken, http.StatusForbidden},
	{errConfigNoToken, http.StatusForbidden},
	{errTokenUnavailable, http.StatusServiceUnavailable},
}

func statusOf(err error) int {
	for _, r := range refusalStatus {
		if errors.Is(err, r.err) {
			return r.status
		}
	}
	return http.StatusForbidden
}
