// Package kernel pins the kernels the images boot: the gokrazy kernel
// modules github.com/gokrazy/kernel.amd64 and .arm64 (prebuilt Linux with
// virtio, squashfs, vfat, efivarfs and nftables built in, no modules to
// load). pin.go imports them under the "tools" build tag so that go.mod
// records their exact versions; images/images.mk finds the files with
// `go list -m -f '{{.Dir}}'`.
package kernel
