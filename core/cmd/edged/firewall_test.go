package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/config"
)

// TestFirewallPrint: `edged firewall print` prints the ruleset of the
// config it is given, and a bad config gets exit 1 with the key at fault.
func TestFirewallPrint(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	for file, text := range map[string]string{
		good: "[sip]\nmode = \"tcp\"\nlisten = [\"192.0.2.10\"]\ntcp_port = 5070\n",
		bad:  "[sip]\nmode = \"tcp\"\ntcp_port = 70000\n",
	} {
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"firewall", "print", "-config", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("firewall print = %d, stderr:\n%s", code, &stderr)
	}
	for _, want := range []string{
		"table inet umedge {",
		"policy drop;",
		`ip daddr 192.0.2.10 udp dport 5070 accept comment "umedge call-router: sip.tcp_port"`,
		`ip daddr 127.0.0.1 tcp dport 9060 accept comment "umedge admin: admin.listen"`,
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("firewall print lacks %q:\n%s", want, &stdout)
		}
	}

	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"firewall", "print", "-config", bad}, &stdout, &stderr); code != 1 {
		t.Errorf("firewall print of a bad config = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "sip.tcp_port") || stdout.Len() != 0 {
		t.Errorf("bad config: stdout %q, stderr %q; want the key on stderr only", &stdout, &stderr)
	}

	// Flags of run only (-config-store) are no flags of firewall print.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"firewall", "print", "-config", good, "-config-store", good}, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
		t.Errorf("firewall print -config-store = %d, stdout %q; want 2 and no ruleset", code, &stdout)
	}
}

// TestFirewallAllowsMedia: the media engine offloads a leg to the kernel
// fast path only where the firewall of the same config accepts its ports.
func TestFirewallAllowsMedia(t *testing.T) {
	cfg := config.Default()
	cfg.Media.PortMin, cfg.Media.PortMax = 30000, 30099
	allow, err := firewallAllows(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ap, want := range map[string]bool{
		"192.0.2.10:30000": true, "[2001:db8::1]:30099": true, // the media range, any address
		"192.0.2.10:30100": false, "192.0.2.10:29998": false, // outside it
		"192.0.2.10:9060": false, // TCP-only admin port
	} {
		if got := allow(netip.MustParseAddrPort(ap)); got != want {
			t.Errorf("allow(%s) = %t, want %t", ap, got, want)
		}
	}
}
