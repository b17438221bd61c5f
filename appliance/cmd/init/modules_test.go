package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/umedge/umedge/appliance/kmod"
	"github.com/umedge/umedge/core/config"
)

// TestFeatureModules: 802.1Q only with a VLAN, nftables only with the
// firewall; a box with a kernel that has modules loads those it carries
// (with dependencies) and leaves out one it does not carry.
func TestFeatureModules(t *testing.T) {
	parse := func(text string) *config.Config {
		t.Helper()
		c, err := config.Parse("t.toml", []byte("[sip]\nmode = \"tcp\"\n"+text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	plain := parse("[appliance]\nfirewall = false\n[media]\nfast_path = \"off\"\n[network.interfaces.eth0]\ndhcp = true\n")
	if got := featureModules(plain); len(got) != 0 {
		t.Errorf("no VLAN, no firewall: %v", got)
	}
	vlan := parse("[appliance]\nfirewall = true\n[media]\nfast_path = \"off\"\n[network.interfaces.eth0]\n[network.interfaces.voice]\nparent = \"eth0\"\nvlan = 100\n")
	if got := featureModules(vlan); !slices.Equal(got, []string{"8021q", "nf_tables", "nft_ct"}) {
		t.Errorf("VLAN and firewall: %v", got)
	}
	if got := featureModules(parse("[media]\nfast_path = \"tc\"\n")); !slices.Contains(got, "sch_ingress") || !slices.Contains(got, "cls_bpf") {
		t.Errorf("fast_path tc: %v, want sch_ingress and cls_bpf", got)
	}

	dir := t.TempDir()
	dep := "kernel/net/8021q/8021q.ko: kernel/net/802/mrp.ko\nkernel/net/802/mrp.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := kmod.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s.Insert = func(f string) error { got = append(got, kmod.Name(f)); return nil }
	b := &box{mods: s, log: slog.New(slog.DiscardHandler)}
	b.loadFeatureModules(vlan) // nf_tables and nft_ct are not in this kernel's set
	if !slices.Equal(got, []string{"mrp", "8021q"}) {
		t.Errorf("loaded %v, want mrp then 8021q", got)
	}
	(&box{log: slog.New(slog.DiscardHandler)}).loadFeatureModules(vlan) // no modules (images/kernel): nothing, no crash
}

// TestBootModulesWithoutModules: on a kernel with everything built in
// nothing is loaded and the early mount errors stay as they were.
func TestBootModulesWithoutModules(t *testing.T) {
	early := []error{errors.New("mount x")}
	loaded, rest, errs := bootModules(nil, early)
	if loaded != nil || errs != nil || len(rest) != 1 || rest[0] != early[0] {
		t.Errorf("bootModules(nil) = %v, %v, %v", loaded, rest, errs)
	}
}
