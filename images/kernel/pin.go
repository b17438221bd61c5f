//go:build tools

package kernel

// The arm64 images boot the gokrazy kernel until images/kernel/arm64/vmlinuz
// is built (make kernel ARCH=arm64) and committed; then this pin goes.
import _ "github.com/gokrazy/kernel.arm64"
