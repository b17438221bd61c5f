# appliance/: the on-box runtime (PID 1 init) and the host firewall.
# Included from the top-level Makefile.

FIREWALL_CONFIG ?= configs/appliance.toml

.PHONY: appliance-test firewall-print

# The appliance's tests; those in network namespaces need root.
appliance-test: test-deps
	$(GO) test -race -count=1 ./appliance/...

# The ruleset the appliance installs for FIREWALL_CONFIG.
firewall-print: build
	$(BIN)/edged firewall print -config $(FIREWALL_CONFIG)
