// Package boottest boots the appliance images under qemu (TCG) and checks
// what an operator would: SIP answers through the forwarded port, an
// update boots the new slot and blesses it, a bad update rolls back by
// itself. The tests carry the integration build tag and run in make test.
package boottest
