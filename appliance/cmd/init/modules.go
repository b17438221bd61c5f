package main

import (
	"errors"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/appliance/kmod"
	"github.com/umedge/umedge/core/config"
)

// bootModuleNames are the file systems init mounts that a kernel may
// have as modules: the ESP and the data partition (vfat) and the EFI
// variables (efivarfs).
var bootModuleNames = []string{"vfat", "efivarfs"}

// openModules opens the running kernel's module directory. A kernel with
// everything built in (the kernel the images ship, images/kernel) has none, and
// every module step is then a no-op.
func openModules() (*kmod.Set, error) {
	dir, err := kmod.Dir("/")
	if err != nil {
		return nil, err
	}
	s, err := kmod.Open(dir)
	if errors.Is(err, kmod.ErrNoModules) {
		return nil, nil
	}
	return s, err
}

// loadBootModules runs bootModules on the box (not in a test's
// namespaces, which share their host's kernel) and returns early without
// what it fixed.
func (b *box) loadBootModules(early []error) []error {
	if !b.o.mounts {
		return early
	}
	mods, err := openModules()
	if err != nil {
		b.log.Error("kernel modules", "err", err)
	}
	if mods == nil {
		return early
	}
	b.mods = mods
	loaded, rest, errs := bootModules(mods, early)
	b.log.Info("kernel modules loaded", "modules", loaded)
	for _, err := range errs {
		b.log.Error("kernel modules", "err", err)
	}
	return rest
}

// bootModules loads the drivers of the devices present (coldplug by
// modalias) and the file systems init mounts, and mounts efivarfs if its
// module came only now; the early mount's failure for want of it is
// dropped from early.
func bootModules(s *kmod.Set, early []error) (loaded []string, rest []error, errs []error) {
	rest = early
	if s == nil {
		return nil, rest, nil
	}
	loaded, err := s.Coldplug("/sys/bus", 4)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range bootModuleNames {
		if !s.Has(m) || m == "efivarfs" && !exists("/sys/firmware/efi") {
			continue // efivarfs refuses to load (ENODEV) without EFI
		}
		if err := s.Load(m); err != nil {
			errs = append(errs, err)
			continue
		}
		loaded = append(loaded, m)
	}
	if slices.Contains(loaded, "efivarfs") {
		for _, m := range earlyMounts {
			if m.fstype != "efivarfs" {
				continue
			}
			if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err == nil || errors.Is(err, unix.EBUSY) {
				rest = slices.DeleteFunc(slices.Clone(early), func(e error) bool { return errors.Is(e, unix.ENODEV) })
			}
		}
	}
	return loaded, rest, errs
}

// featureModules are the modules the config's features need: 802.1Q for
// VLANs, nftables with conntrack for the firewall, TC for the media fast
// path.
func featureModules(cfg *config.Config) []string {
	var out []string
	for _, ifc := range cfg.Network.Interfaces {
		if ifc.Parent != "" {
			out = append(out, "8021q")
			break
		}
	}
	if cfg.Appliance.Firewall {
		out = append(out, "nf_tables", "nft_ct")
	}
	// The media fast path attaches by TCX, or on kernels before 6.6 by a
	// clsact qdisc (sch_ingress) with a cls_bpf filter.
	if cfg.Media.FastPath != "" && cfg.Media.FastPath != "off" {
		out = append(out, "sch_ingress", "cls_bpf")
	}
	return out
}

// loadFeatureModules loads those of cfg's feature modules the image
// carries. One it does not carry is left to the feature itself, which
// names what the kernel lacks (netcfg.ErrNo8021Q).
func (b *box) loadFeatureModules(cfg *config.Config) {
	if b.mods == nil {
		return
	}
	for _, m := range featureModules(cfg) {
		if !b.mods.Has(m) {
			continue
		}
		if err := b.mods.Load(m); err != nil {
			b.log.Error("kernel module", "module", m, "err", err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
