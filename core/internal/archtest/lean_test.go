package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// lean: binaries that must not link libraries they never use. Under the
// emulation of the boot tests every megabyte of a binary costs boot time
// (unpacking the initramfs, paging in from the squashfs root, Go's start),
// and a dependency arrives unnoticed through one import of a type.
var lean = []struct {
	pkg  string
	deny []string
	why  string
}{
	{
		pkg:  "appliance/cmd/init",
		deny: []string{"google.golang.org/grpc", "github.com/hashicorp/go-plugin", "google.golang.org/protobuf"},
		why: "the PID 1 reads the config but never talks to a plugin; core/config naming plugin kinds through core/sdk/base " +
			"linked the SDK's RPC stack into it: 14.9 MB instead of 8.7 MB (docs/PERFORMANCE.md)",
	},
}

func TestLeanBinaries(t *testing.T) {
	for _, l := range lean {
		out, err := exec.Command("go", "list", "-deps", module+l.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", l.pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed %d packages: the test is not looking at the binary", l.pkg, len(deps))
		}
		for _, d := range unwanted(deps, l.deny) {
			t.Errorf("%s links %s: %s", l.pkg, d, l.why)
		}
	}
}

// unwanted returns the deps that are, or are inside, one of deny.
func unwanted(deps, deny []string) []string {
	var bad []string
	for _, d := range deps {
		for _, p := range deny {
			if d == p || strings.HasPrefix(d, p+"/") {
				bad = append(bad, d)
				break
			}
		}
	}
	return bad
}

func TestUnwantedCatchesDeps(t *testing.T) {
	deny := []string{"google.golang.org/grpc"}
	got := unwanted([]string{"fmt", "google.golang.org/grpc", "google.golang.org/grpc/codes", "google.golang.org/grpcx"}, deny)
	if strings.Join(got, " ") != "google.golang.org/grpc google.golang.org/grpc/codes" {
		t.Fatalf("unwanted = %v", got)
	}
}
