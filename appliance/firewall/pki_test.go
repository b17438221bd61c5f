package firewall

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/appliance/firstboot"
)

// withTestPKI writes a self-signed device certificate for umedge.local,
// which serves as its own client CA, and points the testdata/ paths of
// text at it.
func withTestPKI(t *testing.T, text string) string {
	t.Helper()
	cert, key, err := firstboot.SelfSigned("umedge.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"server.pem": cert, "ca.pem": cert, "server-key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return strings.ReplaceAll(text, "testdata/", dir+"/")
}
