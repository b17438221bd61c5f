// Package routing turns a router plugin's decisions into a back end for
// each call: it caches decisions, and enforces what must hold per call
// whatever the cache says — back-end health, per-gateway call rate — from
// the plugin's Topology.
//
// The plugin is consulted only on a cache miss (DESIGN.md §2: one plugin
// round trip costs ~185 µs, so a steady call stream must not cross the
// process boundary). When the plugin is down, cached decisions keep
// serving, even past their TTL, and only unseen calls get 503.
package routing
