//go:build !unix

package sipfront

// fdLimit stands in for RLIMIT_NOFILE where there is none: a fixed budget
// of 16384 descriptors, so the derived limit is a little under 15,000
// stream connections unless sip.max_connections sets one.
func fdLimit() (uint64, error) { return 16384, nil }
