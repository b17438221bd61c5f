// Package hep sends copies of SIP messages to a HEPv3 (EEP) capture
// collector such as Homer's heplify-server or sngrep, off the SIP path.
//
// The wire format is the HEP3 Network Protocol Specification of the
// sipcapture project: a "HEP3" header with the total length, then chunks
// of vendor id, type id, length (chunk header included) and value, all in
// network byte order. Packets are self-delimiting, so the same encoding
// goes into UDP datagrams and onto a TCP stream.
//
// A Sender owns a bounded queue and one goroutine. Capture only copies the
// message into a pooled buffer and queues it without blocking; a full
// queue drops and counts. The goroutine encodes, resolves what it must and
// writes to the collector, so a dead, blackholed or slow collector costs
// the SIP path nothing but the copy.
package hep
