# umedge — the Makefile is an index: every recipe is a plain go command.

GO          ?= go
CGO_ENABLED ?= 0
VERSION     ?= $(shell git describe --dirty --always 2>/dev/null || echo dev)
LDFLAGS     ?= -s -w -X github.com/umedge/umedge/core/internal/telemetry.Version=$(VERSION)
BIN         ?= bin
FUZZTIME    ?= 30s
CONFIG      ?= configs/umedge.toml
PLUGINS     := $(notdir $(wildcard plugins/*))
# Debian packages the integration tests and benchmarks drive: SIPp and the
# Kamailio reference (util-linux taskset pins them), rtpengine (the media of
# the SBC reference, and of bench-media), sngrep (the HEP collector), the runtime of the
# Python router plugin of examples/pyrouter, baresip (the SRTP softphone of
# the SBC tests); nftables and iproute2 for the firewall, network and NAT
# tests in namespaces, conntrack for the NAT that rebinds, dosfstools and e2fsprogs for the data-partition
# tests; qemu, its UEFI firmware and systemd-boot boot the appliance images
# (images/boottest).
TEST_DEBS   ?= sip-tester ethtool sngrep kamailio rtpengine-daemon python3-grpcio python3-protobuf python3-cryptography baresip-core \
	nftables iproute2 conntrack dosfstools e2fsprogs qemu-system-x86 qemu-system-arm ovmf qemu-efi-aarch64 systemd-boot-efi

.PHONY: all build plugins run test test-short test-integration test-deps bench-sip bench-media bench-b2bua bpf \
	fuzz proto pyproto lint archcheck clean

all: build plugins

build:
	@echo "==> building $(BIN)/edged"
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/edged ./core/cmd/edged

# Plugins land in $(BIN)/plugins as umedge-plugin-<name>, pinned by
# $(BIN)/plugins.sha256, outside the plugin directory (a pin kept beside the
# binary it pins protects nothing; config validation refuses one inside).
plugins:
	@echo "==> building plugins: $(PLUGINS)"
	@mkdir -p $(BIN)/plugins
	rm -f $(BIN)/plugins/SHA256SUMS
	for p in $(PLUGINS); do \
		CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/umedge-plugin-$$p ./plugins/$$p || exit 1; \
	done
	cd $(BIN)/plugins && sha256sum umedge-plugin-* > ../plugins.sha256

# Starts the appliance on loopback with the shipped all-in-one config.
run: build plugins
	$(BIN)/edged demo-pki $(BIN)/tls
	$(BIN)/edged -config $(CONFIG)

# The README's test command, and CI's: unit, fuzz seeds and integration
# tests against real peers (the boot tests need arm64's systemd-boot).
test: test-deps efi-arm64
	@echo "==> vet"
	$(GO) vet ./...
	@echo "==> unit and integration tests"
	$(GO) test -race -count=1 -tags integration -timeout 30m ./...

test-short:
	$(GO) test -race -short ./...

test-integration: test-deps
	$(GO) test -race -tags integration -run Integration -v -timeout 30m ./...

test-deps:
	@for d in $(TEST_DEBS); do dpkg -s $$d >/dev/null 2>&1 || missing="$$missing $$d"; done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Ramps the load generator (sipbench's Go UAC, core/internal/sipload;
# -generator sipp for SIPp) against Kamailio's stateless redirect and edged,
# side by side, over UDP and TCP, on two scenarios: the single repeated call, and the mix
# (a distinct caller on every call, a 10,000-mailbox directory; Kamailio
# holds it in an htable from db_text, both modules of the kamailio package).
# BENCH_ARGS="-scenarios mix -servers kamailio" narrows it (sipbench -h).
bench-sip: test-deps build plugins
	$(GO) run ./core/cmd/sipbench -edged $(BIN)/edged -plugins $(BIN)/plugins $(BENCH_ARGS)

# Ramps concurrent bidirectional G.711 calls through the media engine (its
# userspace relay, and umedge-tc: the kernel fast path) and through rtpengine
# (userspace forwarding, driven over its ng protocol), RTP⇄RTP and RTP⇄SRTP,
# the load on CPU 0 and the server on CPU 1, generator and server in two
# network namespaces on a veth (-netns; TC does not run on loopback).
# Servers: rtpengine; umedge on sockets (the general default); umedge-tc
# (latched plain RTP in the kernel) and umedge-xdp (userspace relaying sent
# through AF_XDP), the two halves of what configs/appliance.toml ships.
# rtpengine-daemon is a Debian package the benchmark needs; no test does.
# BENCH_ARGS="-modes rtp -servers umedge-tc" narrows it (mediabench -h).
bench-media:
	@dpkg -s rtpengine-daemon >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon >/dev/null; }
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -o $(BIN)/mediabench ./core/cmd/mediabench
	taskset -c 0 $(BIN)/mediabench -netns -servers rtpengine,umedge,umedge-tc,umedge-xdp $(BENCH_ARGS)

# The media fast path's eBPF object and its Go bindings (committed, so the
# build and CI need no compiler): Debian clang, llvm and libbpf-dev.
BPF_DIR := core/internal/media/fastpath
bpf:
	@command -v clang >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev >/dev/null; }
	cd $(BPF_DIR) && GOPACKAGE=fastpath $(GO) tool bpf2go -target bpfel -type fp_key -type fp_fwd \
		bpf fastpath.c -- -O2 -g -Wall -Werror -I/usr/include/$$(uname -m)-linux-gnu

# Full calls of the mix through the proxy action (no media): the Go
# generator (sipload's full-call UAC; BENCH_ARGS="-generator sipp" for SIPp)
# over UDP to edged, which runs every pool as a B2BUA with the media
# anchored, to Kamailio as a stateful tm + rr proxy (no media: the issue's
# reference) and to Kamailio with its media anchored in rtpengine (the SBC
# an operator builds from them: the same work as edged's), each relaying to
# the generator's callees (sipload.UAS) on the mailboxes' back-end hosts over
# UDP, then over TCP; calls held for 0.5 s. Then the memory per
# active call (2,000 calls placed per 20 s hold). About 20 minutes;
# BENCH_ARGS="-backend-transports udp" narrows it (sipbench -h).
bench-b2bua: test-deps build plugins
	$(GO) run ./core/cmd/sipbench -edged $(BIN)/edged -plugins $(BIN)/plugins -servers kamailio,kamailio+rtpengine,edged \
		-scenarios b2bua -transports udp -backend-transports udp,tcp -start 500 $(BENCH_ARGS)

fuzz:
	$(GO) test -run XXX -fuzz FuzzDiversion -fuzztime $(FUZZTIME) ./core/internal/sipheader
	$(GO) test -run XXX -fuzz FuzzHistoryInfo -fuzztime $(FUZZTIME) ./core/internal/sipheader
	$(GO) test -run XXX -fuzz FuzzDatagram -fuzztime $(FUZZTIME) ./core/internal/sipfront
	$(GO) test -run XXX -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./core/config
	$(GO) test -run XXX -fuzz FuzzLineIndex -fuzztime $(FUZZTIME) ./core/config
	$(GO) test -run XXX -fuzz FuzzParseNumber -fuzztime $(FUZZTIME) ./plugins/umrouter
	$(GO) test -run XXX -fuzz FuzzConfigure -fuzztime $(FUZZTIME) ./plugins/umrouter
	$(GO) test -run XXX -fuzz FuzzReadCLIXML -fuzztime $(FUZZTIME) ./core/internal/exchimport
	$(GO) test -run XXX -fuzz FuzzReadCSV -fuzztime $(FUZZTIME) ./core/internal/exchimport
	$(GO) test -run XXX -fuzz FuzzSDP -fuzztime $(FUZZTIME) ./core/internal/media
	$(GO) test -run XXX -fuzz FuzzPacket -fuzztime $(FUZZTIME) ./core/internal/media
	$(GO) test -run XXX -fuzz FuzzUDPTL -fuzztime $(FUZZTIME) ./core/internal/media
	$(GO) test -run XXX -fuzz FuzzSRTPDecrypt -fuzztime $(FUZZTIME) ./core/internal/media
	$(GO) test -run XXX -fuzz FuzzRepack -fuzztime $(FUZZTIME) ./core/internal/media
	$(GO) test -run XXX -fuzz FuzzReferRewrite -fuzztime $(FUZZTIME) ./core/internal/b2bua

# Regenerates the committed protobuf code (needs protoc, Debian protobuf-compiler).
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
	protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative core/sdk/base/proto/base.proto
	protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative core/sdk/router/proto/router.proto

# Regenerates the committed Python gRPC code of examples/pyrouter (needs
# protoc, Debian protobuf-compiler, and python3-grpc-tools).
pyproto:
	sh examples/pyrouter/gen.sh

archcheck:
	$(GO) test -run TestArchitecture ./core/internal/archtest

GOLANGCI_LINT ?= $(shell $(GO) env GOPATH)/bin/golangci-lint

lint: archcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@test -x $(GOLANGCI_LINT) || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	$(GOLANGCI_LINT) run --build-tags integration ./...

clean:
	rm -rf $(BIN)

include appliance/appliance.mk
include images/images.mk
