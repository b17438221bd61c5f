package hep

import "errors"

var (
	// ErrTooLarge means a message does not fit in one HEP packet (65,535
	// bytes, headers included).
	ErrTooLarge = errors.New("hep: packet too large")
	// ErrMalformed means bytes are no HEPv3 packet.
	ErrMalformed = errors.New("hep: malformed packet")
	// ErrNetwork means the transport to the collector is neither udp nor tcp.
	ErrNetwork = errors.New("hep: transport must be udp or tcp")
	// ErrNoCollector means a Sender was asked for without a collector address.
	ErrNoCollector = errors.New("hep: no collector address")
	// ErrBadPort means a collector's port is not 1..65535.
	ErrBadPort = errors.New("bad port")
	// ErrNoAddress means a collector's host name resolved to nothing.
	ErrNoAddress = errors.New("host has no address")
)
