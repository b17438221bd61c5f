#!/bin/sh
# build.sh ARCH [config] builds the umedge kernel for ARCH (amd64 or arm64) from
# Debian's linux-source-6.12 (the version in ./debian-version) and writes
# ARCH/config (the full .config), ARCH/vmlinuz and ARCH/vmlinuz.sha256;
# with "config" it stops after writing ARCH/config.
# `make kernel ARCH=…` runs it (images/README.md, "The kernel").
#
# The configuration is the gokrazy kernel's own (ARCH/gokrazy.config),
# brought to 6.12 by olddefconfig, with umedge.config and
# ARCH/umedge.config merged over it; a fragment line that does not survive
# (a dependency missing, a symbol renamed) fails the build.
#
# KERNEL_WORK (default bin/kernel) holds the unpacked source and the
# object trees; KERNEL_JOBS (default 2) the parallel jobs.
set -eu

# All in a function: sh reads the whole script before running any of it,
# so an edit during a build does not change what runs.
main() {

arch=${1:?usage: build.sh amd64|arm64}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${KERNEL_WORK:-$repo/bin/kernel}
jobs=${KERNEL_JOBS:-2}
want=$(cat "$here/debian-version")
tarball=/usr/src/linux-source-6.12.tar.xz

case $arch in
amd64) karch=x86 cross= target=bzImage image=arch/x86/boot/bzImage ;;
arm64) karch=arm64 cross=aarch64-linux-gnu- target=Image image=arch/arm64/boot/Image ;;
*) echo "build.sh: unknown arch $arch (amd64 or arm64)" >&2; exit 2 ;;
esac

have=$(dpkg-query -W -f '${Version}' linux-source-6.12 2>/dev/null || true)
if [ "$have" != "$want" ]; then
	echo "build.sh: linux-source-6.12 is ${have:-not installed}, the pin is $want:" >&2
	echo "  apt-get install linux-source-6.12=$want (make kernel-deps)" >&2
	exit 1
fi

# One unpacked source for both arches, unpacked again when the pin moves.
src=$work/linux-source-6.12
if [ "$(cat "$src/.umedge-version" 2>/dev/null)" != "$want" ]; then
	echo "==> unpacking $tarball into $work"
	rm -rf "$src"
	mkdir -p "$work"
	tar -C "$work" -xf "$tarball"
	echo "$want" > "$src/.umedge-version"
fi

# A reproducible build: the same source, configuration and toolchain give
# the same image (no date, user or host of the build machine in it).
# The timestamp is the date of the Debian package's changelog entry.
# (A pipeline's status is its last command's: an unreadable changelog
# would leave the timestamp empty and the kernel would take today's date.)
changelog=/usr/share/doc/linux-source-6.12/changelog.Debian.gz
KBUILD_BUILD_TIMESTAMP=$(zcat "$changelog" | sed -n 's/^ -- .*>  //p' | head -n 1)
if [ -z "$KBUILD_BUILD_TIMESTAMP" ]; then
	echo "build.sh: no changelog date in $changelog for KBUILD_BUILD_TIMESTAMP" >&2
	exit 1
fi
export KBUILD_BUILD_TIMESTAMP
export KBUILD_BUILD_USER=umedge KBUILD_BUILD_HOST=umedge KBUILD_BUILD_VERSION=1
export LC_ALL=C TZ=UTC
out=$work/$arch
mkdir -p "$out"
kmake() { make -C "$src" O="$out" ARCH="$karch" CROSS_COMPILE="$cross" "$@"; }

frags="$here/umedge.config $here/$arch/umedge.config"
if [ "$arch" = arm64 ]; then
	# Every SoC platform off (ARCH/umedge.config says why).
	sed -n 's/^config \(ARCH_[A-Z0-9_]*\)$/# CONFIG_\1 is not set/p' \
		"$src/arch/arm64/Kconfig.platforms" > "$out/platforms-off.config"
	frags="$frags $out/platforms-off.config"
fi

echo "==> configuring $arch"
cp "$here/$arch/gokrazy.config" "$out/.config"
kmake -s olddefconfig
(cd "$src" && ARCH=$karch scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" $frags >/dev/null)
kmake -s olddefconfig

bad=0
for f in $frags; do
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*)
			grep -qxF "$line" "$out/.config" || { echo "build.sh: $f: $line did not survive olddefconfig: $(grep "^${line%%=*}=" "$out/.config" || echo unset)" >&2; bad=1; } ;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }; sym=${sym%% *}
			! grep -q "^$sym=" "$out/.config" || { echo "build.sh: $f: $sym is still $(grep "^$sym=" "$out/.config")" >&2; bad=1; } ;;
		esac
	done < "$f"
done
[ $bad = 0 ] || exit 1
cp "$out/.config" "$here/$arch/config"
[ "${2:-}" != config ] || exit 0

echo "==> building $arch $target (make -j$jobs, nice 19)"
start=$(date +%s)
nice -n 19 make -C "$src" O="$out" ARCH="$karch" CROSS_COMPILE="$cross" -j"$jobs" -s "$target"
echo "==> $arch built in $(( $(date +%s) - start )) s"
cp "$out/$image" "$here/$arch/vmlinuz"
(cd "$here/$arch" && sha256sum vmlinuz > vmlinuz.sha256 && cat vmlinuz.sha256)
}

main "$@"
