//go:build unix

package sipfront

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdLimit returns the soft RLIMIT_NOFILE (the Go runtime raises it to the
// hard limit at start on Linux).
func fdLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit nofile: %w", err)
	}
	return rl.Cur, nil
}
