# appliance/: the on-box runtime (PID 1 init) and the host firewall.
# Included from the top-level Makefile.

ARCH            ?= amd64
FIREWALL_CONFIG ?= configs/appliance.toml

.PHONY: appliance-init appliance-test firewall-print

# The PID 1 binary the image puts at /init: static, for ARCH=amd64|arm64.
appliance-init:
	@echo "==> building $(BIN)/appliance/$(ARCH)/init"
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/appliance/$(ARCH)/init ./appliance/cmd/init

# The appliance's tests; those in namespaces (firewall, network, init as PID 1) need root.
appliance-test: test-deps
	$(GO) test -race -count=1 -tags integration ./appliance/...

# The ruleset the appliance installs for FIREWALL_CONFIG.
firewall-print: build
	$(BIN)/edged firewall print -config $(FIREWALL_CONFIG)
