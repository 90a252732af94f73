# Fan-out benchmark (issues #7, #13): the appliance against Mosquitto, side
# by side. Included from the top Makefile. Needs Debian's mosquitto package
# (it ships mosquitto and mosquitto_passwd), and for scenario (f) Node.js
# with MQTT.js from npm, installed below into the gitignored .cache/node.
# Both bench targets only report: timings never fail a build. A message the
# cluster scenarios (g, h: three appliances on loopback, issue #14) lose,
# repeat or reorder does.

BENCH_BIN   ?= bin/firehose-bench
BENCH_FLAGS ?=

# MQTT.js for scenario (f), pinned. Installed by package name and recorded in
# .cache/node/package.json (not --no-save: npm prunes every package missing
# from package.json on each install, so packages other tests install into
# the same directory, such as playwright-core, stay only if they are saved
# too). Idempotent: npm runs only when the installed version differs.
BENCH_NODE_DIR := .cache/node
BENCH_NPM      := mqtt@5.16.0

.PHONY: bench bench-quick bench-build bench-deps

# make deps installs the bench's npm package too (before the Debian ones:
# the recipe of deps stays in the top Makefile).
deps: bench-deps

bench-deps:
	@if ! command -v npm >/dev/null; then echo "npm is missing: bench scenario f will be skipped"; exit 0; fi; \
	for p in $(BENCH_NPM); do \
		name=$${p%@*}; want=$${p##*@}; \
		have=$$(node -p "require('./$(BENCH_NODE_DIR)/node_modules/$$name/package.json').version" 2>/dev/null || true); \
		if [ "$$have" != "$$want" ]; then \
			echo "npm installing $$p into $(BENCH_NODE_DIR)"; \
			npm install --prefix $(BENCH_NODE_DIR) --save-exact --no-package-lock --no-audit --no-fund $$p || exit 1; \
		fi; \
	done

bench-build: bench-deps
	go build -o $(BENCH_BIN) ./bench

# Full run: 3 repetitions, up to 10,000 subscribers; see bench/README.md.
bench: bench-build
	$(BENCH_BIN) $(BENCH_FLAGS)

# Small sizes, about two minutes; CI runs this one.
bench-quick: bench-build
	$(BENCH_BIN) -quick $(BENCH_FLAGS)
