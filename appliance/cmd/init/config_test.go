package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umedge/umedge/core/config"
)

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestChooseConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "default.toml"), "[sip]\nmode = \"tcp\"\nfqdn = \"shipped.example.net\"\n")
	mine := writeFile(t, filepath.Join(dir, "mine.toml"), "[sip]\nmode = \"tcp\"\nfqdn = \"edge1.example.net\"\n")
	broken := writeFile(t, filepath.Join(dir, "broken.toml"), "[sip]\nmode = \"tcp\"\ntcp_port = 99999\n")
	garbage := writeFile(t, filepath.Join(dir, "garbage.toml"), "\x00\x01 not toml [[[")

	c := chooseConfig(mine, good)
	if c.err != nil || c.path != mine || c.cfg.SIP.FQDN != "edge1.example.net" {
		t.Errorf("good operator file: %+v", c)
	}
	// A FIFO would block the read (and the boot) for ever, a directory or
	// a device is no config: each falls back at once, with the reason.
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.toml")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"invalid value": broken, "corrupt file": garbage, "missing file": filepath.Join(dir, "none.toml"),
		"fifo": fifo, "directory": sub, "device": "/dev/zero"} {
		c := chooseConfig(file, good)
		if c.err == nil || c.path != good || c.cfg.SIP.FQDN != "shipped.example.net" {
			t.Errorf("%s: runs %s (%v), want the shipped default and the reason", name, c.path, c.err)
		}
	}
	if c := chooseConfig(broken, good); !strings.Contains(c.err.Error(), "sip.tcp_port") {
		t.Errorf("the reason does not name the key: %v", c.err)
	}
	// Even a broken shipped file leaves the init something to probe.
	c = chooseConfig(broken, garbage)
	if c.cfg == nil || c.cfg.SIP.TCPPort != config.Default().SIP.TCPPort || c.err == nil {
		t.Errorf("both broken: %+v", c)
	}
	var fe *config.FieldError
	if !errors.As(c.err, &fe) {
		t.Errorf("reason %v has no *config.FieldError", c.err)
	}
}

func TestPointAt(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "run", "umedge.toml")
	for _, target := range []string{"/etc/umedge/umedge.toml", "/data/umedge.toml"} {
		if err := pointAt(link, target); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("link -> %q, %v; want %q", got, err, target)
		}
	}
}

func TestHostnameOf(t *testing.T) {
	cfg := config.Default()
	cfg.SIP.FQDN = "edge1.example.net"
	if got := hostnameOf(&cfg); got != "edge1" {
		t.Errorf("hostnameOf = %q", got)
	}
	cfg.Appliance.Hostname = "box-7"
	if got := hostnameOf(&cfg); got != "box-7" {
		t.Errorf("hostnameOf with appliance.hostname = %q", got)
	}
}

// A file renamed over the config with the same size and the same time
// (FAT's 2 s steps, or an upload within the same second) is a change.
func TestStampSeesAReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "umedge.toml")
	when := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)
	write := func(name, text string) {
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, when, when); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "[log]\nlevel = \"info\"\n")
	before := stampOf(path)
	write(path+".new", "[log]\nlevel = \"warn\"\n") // the same size
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if after := stampOf(path); after == before {
		t.Fatalf("a replaced file of the same size and time has the same stamp %+v", after)
	}
}
