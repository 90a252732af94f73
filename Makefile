# firehose: the appliance, its tests, packages and benchmark.
#   make run          run the appliance locally on unprivileged ports
#   make deps test    install what the tests need (Debian, root), then run them
#   make ci           everything CI runs (.ci/run)

GO ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/firehose/firehose/appliance/version.Version=$(VERSION)
FUZZTIME ?= 10s

# Debian packages the tests use: a C compiler for -race, MQTT clients nobody
# here wrote, curl to read the journal's event stream, Chromium for the page's
# browser test, Mosquitto for the benchmark, nftables and iproute2 for
# firewall tests in network namespaces, and the tools that build and check the
# packages and boot a systemd container.
DEPS_APT := gcc libc6-dev git mosquitto mosquitto-clients python3-paho-mqtt curl iproute2 nftables \
	debootstrap systemd-container dpkg-dev lintian rpm rpmlint openssl chromium

# npm packages only tests use, installed by name into a gitignored directory
# and recorded there (--save-exact: npm prunes what its package.json lacks,
# and the bench's MQTT.js shares the directory): playwright-core drives
# Chromium in the page's browser test; MQTT.js is a client nobody here wrote.
NODE_DIR := .cache/node
DEPS_NPM := playwright-core@1.65.1 mqtt@5.16.0

.DEFAULT_GOAL := build
.PHONY: build run deps node-deps test vet unit fuzz ci

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/firehosectl ./cmd/firehosectl

run: build
	mkdir -p /tmp/firehose-local
	bin/firehosectl serve --config packaging/firehose.local.toml

# Idempotent: the package lists are refreshed only when something is missing.
deps:
	@missing=$$(for p in $(DEPS_APT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@$(MAKE) --no-print-directory node-deps

# The npm packages of DEPS_NPM; npm runs only when an installed version differs.
node-deps:
	@if ! command -v npm >/dev/null; then echo "npm is missing: the browser tests will skip"; exit 0; fi; \
	for p in $(DEPS_NPM); do \
		name=$${p%@*}; want=$${p##*@}; \
		have=$$(node -p "require('./$(NODE_DIR)/node_modules/$$name/package.json').version" 2>/dev/null || true); \
		if [ "$$have" != "$$want" ]; then \
			echo "npm installing $$p into $(NODE_DIR)"; \
			npm install --prefix $(NODE_DIR) --save-exact --no-package-lock --no-audit --no-fund $$p || exit 1; \
		fi; \
	done

test: vet unit fuzz

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Each fuzz target for FUZZTIME: parsers of outside input (config, Gerrit
# events, topics built from them, the packet framing guard).
# On a busy machine the toolchain's fuzzer sometimes ends a timed run with a
# bare "context deadline exceeded" and no failing input (a worker still busy
# when -fuzztime ran out); such a run, and only such a run, is tried once
# more. A failing input always fails the build.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t"; \
			for try in 1 2; do \
				rc=0; out=$$($(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || rc=$$?; \
				echo "$$out"; \
				[ $$rc -ne 0 ] || break; \
				if [ $$try = 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
					echo "fuzz $$t: the fuzzer's own deadline error, no failing input: once more"; continue; \
				fi; \
				exit $$rc; \
			done; \
		done; \
	done

ci: deps test package-check e2e bench-quick

-include packaging/package.mk
-include bench/bench.mk
