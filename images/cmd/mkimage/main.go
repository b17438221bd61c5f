// Command mkimage builds an appliance disk image (and, on request, the
// initramfs of the fast qemu mode) from edged, its plugins, an init, a
// kernel and systemd-boot:
//
//	mkimage -arch amd64 -kernel vmlinuz -bootloader systemd-bootx64.efi \
//	    -init bin/amd64/init -edged bin/amd64/edged -plugins bin/amd64/plugins \
//	    -config configs/appliance.toml -trust firmware/keys/release \
//	    -out bin/umedge-amd64.img -root-out bin/umedge-amd64.root.squashfs
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/umedge/umedge/firmware/install"
	"github.com/umedge/umedge/firmware/keys"
	"github.com/umedge/umedge/images/diskimage"
	"github.com/umedge/umedge/images/modules"
	"github.com/umedge/umedge/images/rootfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

var (
	errMissing   = errors.New("missing")
	errNoPlugins = errors.New("no umedge-plugin-*")
)

type options struct {
	arch, kernel, bootloader        string
	init, edged, plugins, config    string
	trust, release, kernelArgs      string
	version                         uint64
	out, rootOut, initramfs, zstOut string
	modules, moduleNames            string
}

// defaultModules are what -modules installs unless -module-names says
// otherwise: the drivers of qemu's virtual machine and the features the
// init uses (the ESP and data partition, EFI variables, VLANs, the
// firewall's nftables with conntrack, the media fast path's clsact and
// cls_bpf). Their dependencies come along.
const defaultModules = "virtio_pci,virtio_net,virtio_blk,virtio_rng,squashfs,vfat,efivarfs,8021q,nf_tables,nft_ct,sch_ingress,cls_bpf"

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.StringVar(&o.arch, "arch", "amd64", "target architecture: amd64 or arm64")
	fs.StringVar(&o.kernel, "kernel", "", "kernel image (EFI stub), e.g. images/kernel/amd64/vmlinuz")
	fs.StringVar(&o.bootloader, "bootloader", "", "systemd-boot EFI binary (Debian systemd-boot-efi)")
	fs.StringVar(&o.init, "init", "", "static PID 1 binary, installed as /init")
	fs.StringVar(&o.edged, "edged", "", "edged binary")
	fs.StringVar(&o.plugins, "plugins", "", "directory of umedge-plugin-* binaries; its sibling plugins.sha256 pins them")
	fs.StringVar(&o.config, "config", "", "TOML installed as /etc/umedge/umedge.toml")
	fs.StringVar(&o.trust, "trust", "firmware/keys/release", "directory of *.pub keys the image accepts update bundles from")
	fs.StringVar(&o.release, "release", "dev", "human release name")
	fs.StringVar(&o.kernelArgs, "kernel-args", "", "further kernel command line arguments of slot A, e.g. appliance.health_grace=45s")
	fs.Uint64Var(&o.version, "version", 1, "monotonic firmware version of slot A")
	fs.StringVar(&o.out, "out", "", "disk image to write (optional)")
	fs.StringVar(&o.rootOut, "root-out", "", "squashfs root to write (required unless only -initramfs is written: it is slot A and a bundle payload)")
	fs.StringVar(&o.initramfs, "initramfs", "", "also write the same tree as an LZ4 (legacy frame) cpio initramfs here")
	fs.StringVar(&o.zstOut, "zst", "", "also write the disk image zstd-compressed here")
	fs.StringVar(&o.modules, "modules", "", "a kernel's module `dir` (/lib/modules/<release>, e.g. of Debian's linux-image package) to take modules from; empty for a kernel with everything built in (images/kernel's)")
	fs.StringVar(&o.moduleNames, "module-names", defaultModules, "comma-separated `modules` -modules installs, with their dependencies")
	if err := fs.Parse(args); err != nil {
		return err
	}
	arch, err := diskimage.ArchNamed(o.arch)
	if err != nil {
		return err
	}
	var missing []string
	required := map[string]string{"init": o.init, "edged": o.edged, "plugins": o.plugins, "config": o.config}
	if o.initramfs == "" || o.out != "" {
		required["root-out"] = o.rootOut // an initramfs alone needs no squashfs root
	}
	for name, v := range required {
		if v == "" {
			missing = append(missing, "-"+name)
		}
	}
	if o.out != "" && (o.kernel == "" || o.bootloader == "") {
		missing = append(missing, "-kernel and -bootloader (with -out)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w %s", errMissing, strings.Join(missing, ", "))
	}

	tree, err := layout(o, arch)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if o.rootOut != "" {
		size, err := rootfs.WriteSquashfs(tree, o.rootOut)
		if err != nil {
			return err
		}
		fmt.Printf("root %s: %d bytes (%.1fs)\n", o.rootOut, size, time.Since(t0).Seconds())
	}
	if o.initramfs != "" {
		if err := rootfs.WriteInitramfs(tree, o.initramfs); err != nil {
			return err
		}
		fmt.Printf("initramfs %s\n", o.initramfs)
	}
	if o.out == "" {
		return nil
	}
	err = diskimage.Build(diskimage.Config{
		Arch: arch, Kernel: o.kernel, Bootloader: o.bootloader, Root: o.rootOut,
		Version: o.version, Release: o.release, Out: o.out, KernelArgs: o.kernelArgs,
	})
	if err != nil {
		return err
	}
	fmt.Printf("image %s (%.1fs)\n", o.out, time.Since(t0).Seconds())
	if o.zstOut != "" {
		n, err := compress(o.out, o.zstOut)
		if err != nil {
			return err
		}
		fmt.Printf("compressed %s: %d bytes\n", o.zstOut, n)
	}
	return nil
}

// layout is the root file system every image has.
func layout(o options, arch diskimage.Arch) (*rootfs.Tree, error) {
	t := &rootfs.Tree{Dirs: []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/boot", "/data", "/var"}}
	t.Add("/init", 0o755, o.init)
	t.Add("/usr/bin/edged", 0o755, o.edged)
	t.Add("/etc/umedge/umedge.toml", 0o644, o.config)
	plugins, err := filepath.Glob(filepath.Join(o.plugins, "umedge-plugin-*"))
	if err != nil {
		return nil, err
	}
	if len(plugins) == 0 {
		return nil, fmt.Errorf("%w in %s", errNoPlugins, o.plugins)
	}
	for _, p := range plugins {
		t.Add("/usr/lib/umedge/plugins/"+filepath.Base(p), 0o755, p)
	}
	t.Add("/usr/lib/umedge/plugins.sha256", 0o644, filepath.Join(filepath.Dir(filepath.Clean(o.plugins)), "plugins.sha256"))
	t.AddData(install.CompatibleFile, 0o644, []byte(arch.Compatible+"\n"))
	trusted, err := filepath.Glob(filepath.Join(o.trust, "*.pub"))
	if err != nil {
		return nil, err
	}
	for _, k := range trusted {
		if _, err := keys.ReadPublic(k); err != nil {
			return nil, err
		}
		t.Add(install.TrustedDir+"/"+filepath.Base(k), 0o644, k)
	}
	if len(trusted) == 0 {
		fmt.Fprintf(os.Stderr, "mkimage: warning: no *.pub in %s: this image refuses every update bundle\n", o.trust)
	}
	t.Dirs = append(t.Dirs, install.TrustedDir)
	if o.modules != "" {
		if err := addModules(t, o.modules, strings.Split(o.moduleNames, ",")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// addModules installs names and their dependencies from dir under
// /lib/modules/<release>, with the modules.dep, modules.alias and
// modules.softdep the init's loader reads.
func addModules(t *rootfs.Tree, dir string, names []string) error {
	sel, err := modules.Select(dir, names)
	if err != nil {
		return err
	}
	base := "/lib/modules/" + sel.Release
	for _, m := range sel.Modules {
		t.Add(base+"/"+m.File, 0o644, filepath.Join(dir, filepath.FromSlash(m.File)))
	}
	t.AddData(base+"/modules.dep", 0o644, sel.Dep())
	t.AddData(base+"/modules.alias", 0o644, sel.Alias())
	t.AddData(base+"/modules.softdep", 0o644, sel.Softdep())
	return nil
}

func compress(in, out string) (int64, error) {
	src, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	zw, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(zw, src); err != nil {
		return 0, errors.Join(err, zw.Close())
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	st, err := dst.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), dst.Close()
}
