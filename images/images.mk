# Appliance images, firmware bundles and qemu (images/README.md). Included
# from the Makefile; every recipe is a plain go (or apt) command.
#
#   make image ARCH=amd64|arm64     bin/<arch>/umedge.img (+ .img.zst, root.squashfs, initramfs.cpio.lz4)
#   make bundle ARCH=… FW_VERSION=N bin/<arch>/umedge-N.bundle, signed with FW_KEY
#   make qemu ARCH=… [MODE=uefi|kernel]
#   make test-boot-arm64-uefi       the UEFI update/rollback test on arm64 alone (make test runs it too)
#   make kernel ARCH=…              rebuild images/kernel/<arch>/{config,vmlinuz,vmlinuz.sha256}
#                                   from Debian's linux-source-6.12 (KERNEL_DEBS; not in CI: amd64 took 24 min)

ARCH         ?= amd64
IMG_DIR      := $(BIN)/$(ARCH)
# The PID 1 of the image.
INIT_PKG     ?= ./appliance/cmd/init
# Further kernel arguments of slot A, e.g. appliance.health_grace=45s.
KERNEL_ARGS  ?=
IMAGE_CONFIG ?= configs/appliance.toml
# Public keys the image accepts bundles from. The release list ships no
# development key; FW_TRUST=firmware/keys/dev makes a dev image.
FW_TRUST     ?= firmware/keys/release
FW_KEY       ?= firmware/keys/dev/dev-ed25519.key
FW_VERSION   ?= 1
FW_RELEASE   ?= $(VERSION)
MODE         ?= uefi
# The kernel the images boot: built by `make kernel` (images/kernel/build.sh)
# and committed, so an image build needs no kernel toolchain.
KERNEL        = images/kernel/$(ARCH)/vmlinuz
# What `make kernel` needs: Debian's kernel source at the pinned version
# (images/kernel/debian-version), its build tools and the arm64 cross
# compiler. Not TEST_DEBS: CI does not build kernels.
KERNEL_DEBS  ?= linux-source-6.12=$(shell cat images/kernel/debian-version) build-essential bc bison flex \
	libelf-dev libssl-dev cpio kmod xz-utils gcc-aarch64-linux-gnu
EFI_amd64    := /usr/lib/systemd/boot/efi/systemd-bootx64.efi
EFI_arm64    := $(BIN)/efi/arm64/systemd-bootaa64.efi
GOARCH_ENV   := CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH)

.PHONY: image image-bins bundle qemu test-boot-arm64-uefi efi-arm64 kernel kernel-deps

image-bins:
	@echo "==> building $(ARCH) binaries into $(IMG_DIR)"
	@mkdir -p $(IMG_DIR)/plugins
	$(GOARCH_ENV) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMG_DIR)/init $(INIT_PKG)
	$(GOARCH_ENV) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMG_DIR)/edged ./core/cmd/edged
	for p in $(PLUGINS); do \
		$(GOARCH_ENV) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMG_DIR)/plugins/umedge-plugin-$$p ./plugins/$$p || exit 1; \
	done
	cd $(IMG_DIR)/plugins && sha256sum umedge-plugin-* > ../plugins.sha256

$(EFI_amd64):
	@echo "$@ is missing: apt-get install systemd-boot-efi" >&2; exit 1

# systemd-boot for arm64 comes from Debian's arm64 package (multiarch).
efi-arm64: $(EFI_arm64)
$(EFI_arm64):
	@mkdir -p $(@D)/deb
	dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }
	cd $(@D)/deb && apt-get download -qq systemd-boot-efi:arm64
	dpkg-deb -x $(@D)/deb/systemd-boot-efi_*_arm64.deb $(@D)/deb/x
	cp $(@D)/deb/x/usr/lib/systemd/boot/efi/systemd-bootaa64.efi $@

image: image-bins $(EFI_$(ARCH))
	@echo "==> assembling $(IMG_DIR)/umedge.img"
	[ ! -f images/kernel/$(ARCH)/vmlinuz.sha256 ] || (cd images/kernel/$(ARCH) && sha256sum -c --quiet vmlinuz.sha256)
	$(GO) run ./images/cmd/mkimage -arch $(ARCH) \
		-kernel $(KERNEL) -bootloader $(EFI_$(ARCH)) \
		-init $(IMG_DIR)/init -edged $(IMG_DIR)/edged -plugins $(IMG_DIR)/plugins \
		-config $(IMAGE_CONFIG) -trust $(FW_TRUST) -version $(FW_VERSION) -release $(FW_RELEASE) \
		-kernel-args '$(KERNEL_ARGS)' \
		-root-out $(IMG_DIR)/root.squashfs -initramfs $(IMG_DIR)/initramfs.cpio.lz4 \
		-out $(IMG_DIR)/umedge.img -zst $(IMG_DIR)/umedge.img.zst

# A bundle of the root and kernel that `make image` last built.
bundle:
	@echo "==> signing $(IMG_DIR)/umedge-$(FW_VERSION).bundle with $(FW_KEY)"
	$(GO) run ./firmware/cmd/umedge-fw create -key $(FW_KEY) -compatible umedge-$(ARCH)-v1 \
		-version $(FW_VERSION) -release $(FW_RELEASE) \
		-kernel $(KERNEL) -root $(IMG_DIR)/root.squashfs \
		-out $(IMG_DIR)/umedge-$(FW_VERSION).bundle

qemu:
	$(GO) run ./images/cmd/qemu -arch $(ARCH) -mode $(MODE) -image $(IMG_DIR)/umedge.img \
		-kernel $(KERNEL) -initramfs $(IMG_DIR)/initramfs.cpio.lz4

test-boot-arm64-uefi: test-deps efi-arm64
	$(GO) test -tags integration -count=1 -v -timeout 20m -run 'TestBootUEFIUpdateRollback/arm64' ./images/boottest

kernel-deps:
	@missing=; for d in $(KERNEL_DEBS); do n=$${d%%=*}; v=$${d#*=}; \
		have=$$(dpkg-query -W -f '$${Version}' $$n 2>/dev/null); \
		{ [ -n "$$have" ] && { [ "$$v" = "$$d" ] || [ "$$v" = "$$have" ]; }; } || missing="$$missing $$d"; done; \
	if [ -n "$$missing" ]; then echo "==> apt-get install$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Takes long (amd64: 24 min with -j2, nice 19, on the shared 2-vCPU
# box at load 2-6; arm64 longer: more drivers); KERNEL_JOBS=N for more jobs.
kernel: kernel-deps
	images/kernel/build.sh $(ARCH)
