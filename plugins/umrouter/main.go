// Package main is the umrouter plugin: the Exchange-UM-style Call Router
// that identifies the peer, its dial plan and the called mailbox, and names
// the back-end pool that must answer each inbound call (um-spec.md §2, §4).
package main

import "github.com/umedge/umedge/core/sdk/router"

func main() { router.Serve(New()) }
