// Package routing answers each inbound call with a back end or a refusal
// from the router plugin's routing table, evaluated in the core.
//
// The plugin publishes its table (router.Table); the engine compiles it and
// decides every call with router.Compiled.Decide, with no plugin call on
// the per-call path (DESIGN.md §2: one plugin round trip costs ~185 µs). On
// top of the table it enforces what must hold per call: the per-gateway
// call rate, with buckets that survive a table refresh unless their rate
// changed, and back-end health. Only a number the table leaves to the
// plugin is asked of it: off the SIP readers, through a bounded queue
// served by a fixed set of workers, each ask with a deadline; a full queue
// or a plugin that is down or hung answers at once with 503. A plugin that
// is down leaves the last good table in force.
package routing
