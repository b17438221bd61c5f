package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBlock writes a /sys/class/block with one uevent per device.
func fakeBlock(t *testing.T, devs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, part := range devs {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ue := "MAJOR=254\nMINOR=1\nDEVNAME=" + name + "\nDEVTYPE=partition\n"
		if part != "" {
			ue += "PARTNAME=" + part + "\n"
		}
		if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(ue), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindByLabel(t *testing.T) {
	sys := fakeBlock(t, map[string]string{"vda": "", "vda1": "ESP", "vda2": "root-a", "vda3": "root-b", "vda4": "data"})
	if dev, err := findByLabel(sys, "data", 0); err != nil || dev != "/dev/vda4" {
		t.Errorf("findByLabel(data) = %q, %v; want /dev/vda4", dev, err)
	}
	if _, err := findByLabel(sys, "swap", 0); err == nil || !strings.Contains(err.Error(), `no partition labelled "swap"`) {
		t.Errorf("findByLabel(swap) = %v", err)
	}
	// Two disks with a data partition (a USB stick with an old image
	// plugged in): refuse rather than mount the wrong one.
	two := fakeBlock(t, map[string]string{"vda4": "data", "sdb4": "data"})
	if _, err := findByLabel(two, "data", 0); err == nil || !strings.Contains(err.Error(), "refusing to guess") {
		t.Errorf("findByLabel with two data partitions = %v", err)
	}
}

func TestFindByLabelWaitsForTheDevice(t *testing.T) {
	sys := fakeBlock(t, map[string]string{"vda1": "ESP"})
	go func() {
		time.Sleep(100 * time.Millisecond)
		d := filepath.Join(sys, "vda4")
		_ = os.MkdirAll(d, 0o755)
		_ = os.WriteFile(filepath.Join(d, "uevent"), []byte("DEVNAME=vda4\nPARTNAME=data\n"), 0o644)
	}()
	if dev, err := findByLabel(sys, "data", 5*time.Second); err != nil || dev != "/dev/vda4" {
		t.Errorf("findByLabel = %q, %v", dev, err)
	}
}

func TestCmdlineValue(t *testing.T) {
	line := "console=ttyS0 root=/dev/vda3 ro appliance.slot=b appliance.health_grace=20s panic=5\n"
	for key, want := range map[string]string{"appliance.slot": "b", "appliance.health_grace": "20s", "appliance": "", "quiet": ""} {
		if got := cmdlineValue(line, key); got != want {
			t.Errorf("cmdlineValue(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestOnTrial(t *testing.T) {
	dir := t.TempDir()
	if onTrial(dir) {
		t.Error("on trial without the EFI variable")
	}
	if err := os.WriteFile(filepath.Join(dir, bootCountVar), []byte{6, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if !onTrial(dir) {
		t.Error("not on trial with LoaderBootCountPath set")
	}
}
