//go:build !linux

package sipfront

import (
	"net"
	"time"
)

// setUserTimeout is Linux's TCP_USER_TIMEOUT; elsewhere the write deadline
// and the idle timeout bound a peer that does not read.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
