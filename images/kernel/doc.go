// Package kernel holds the kernel the images boot: Linux 6.12 LTS from
// Debian's linux-source-6.12 (the exact package version in debian-version),
// configured like the gokrazy kernel it replaces (everything built in, no
// modules) plus 802.1Q VLANs, cls_bpf/clsact and the BPF JIT, without
// ftrace. build.sh (`make kernel ARCH=amd64|arm64`) builds it from
// <arch>/gokrazy.config, umedge.config and <arch>/umedge.config and
// writes <arch>/config, <arch>/vmlinuz and <arch>/vmlinuz.sha256, which
// are committed: an image build needs no kernel toolchain. The tests check
// the committed kernels' embedded configuration. The arm64 kernel is
// for UEFI machines (SystemReady-style boards, servers, VMs): every SoC
// platform is off (arm64/umedge.config), so a board that needs its SoC's
// drivers and a device tree from U-Boot is not a target.
package kernel
