// Package sdktest runs plugin implementations in-process through their real
// go-plugin gRPC adapters and checks them against the conformance suite of
// their kind; every plugin's tests call it.
package sdktest
