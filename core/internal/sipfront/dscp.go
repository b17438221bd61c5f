package sipfront

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// # DSCP marking
//
// Every socket the front end sends SIP from marks its packets with the
// DSCP of sip.dscp (RFC 2474; CS3 by default), so that a network's QoS
// policy can give signalling its class: the UDP listeners (their answers
// and the B2BUA's requests both leave through them), the TCP and TLS
// listeners (their SYN-ACKs) and every connection they accept, and the
// connections we open to back ends. A listener is marked before it binds
// and a connection we open before it connects (the Control hook), so its
// first packet is marked too. An accepted connection is marked again
// after accept, though Linux copies the listener's marking into it (the
// accepted cases of TestDSCPOnTheWire pass without that): one that
// waited in the accept queue across a reload was copied from the old
// value, and with net.ipv4.tcp_reflect_tos a connection takes its peer's
// SYN marking instead. Apply marks the open sockets anew when the value
// changes. Unmarked (0), a socket is not touched when it opens: a kernel
// that refuses IP_TOS (a sandbox) then costs no listener; one that
// refuses a marking asked for is a listener not opened, its error naming
// sip.dscp.

// tosByte is the TOS byte (IPv4) or traffic class (IPv6) of a DSCP: its
// six high bits. The two ECN bits (RFC 3168) are left 0; TCP sets them
// itself on a connection that negotiated ECN.
func tosByte(dscp int) int { return dscp << 2 }

// markTOS sets the TOS byte of the socket fd: IP_TOS on an IPv4 socket;
// IPV6_TCLASS on an IPv6 one, and IP_TOS as well for the IPv4-mapped
// traffic a dual-stack socket carries (ignored where the kernel refuses
// it on that family). A var for tests.
var markTOS = func(fd, tos int) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	switch sa.(type) {
	case *unix.SockaddrInet4:
		return os.NewSyscallError("setsockopt IP_TOS", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos))
	case *unix.SockaddrInet6:
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos); err != nil {
			return os.NewSyscallError("setsockopt IPV6_TCLASS", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos)
	}
	return nil
}

// markRaw sets the TOS byte of rc's socket, naming sip.dscp in its error.
func markRaw(rc syscall.RawConn, tos int) error {
	var merr error
	if err := rc.Control(func(fd uintptr) { merr = markTOS(int(fd), tos) }); err != nil { //nolint:gosec // a descriptor
		return err
	}
	if merr != nil {
		return fmt.Errorf("sip.dscp %d (TOS %#02x): %w", tos>>2, tos, merr)
	}
	return nil
}

// markConn sets the TOS byte of c's socket: a listener or a connection.
func markConn(c any, tos int) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil // not a socket (a test's pipe)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return markRaw(rc, tos)
}

// tosControl is a net.ListenConfig's or net.Dialer's Control hook that
// marks the socket before it binds or connects.
func tosControl(tos int) func(network, address string, rc syscall.RawConn) error {
	if tos == 0 {
		return nil // what a new socket sends with
	}
	return func(_, _ string, rc syscall.RawConn) error { return markRaw(rc, tos) }
}
