# Fan-out benchmark (issues #7, #13): the appliance against Mosquitto, side
# by side. Included from the top Makefile. Needs Debian's mosquitto package
# (it ships mosquitto and mosquitto_passwd), and for scenario (f) Node.js
# with MQTT.js from npm, which make deps installs into the gitignored .cache/node.
# Both bench targets only report: timings never fail a build. A message the
# cluster scenarios (g, h: three appliances on loopback, issue #14) lose,
# repeat or reorder does.

BENCH_BIN   ?= bin/firehose-bench
BENCH_FLAGS ?=

.PHONY: bench bench-quick bench-build bench-deps

# MQTT.js for scenario (f) is one of the top Makefile's DEPS_NPM, installed
# into .cache/node.
bench-deps: node-deps

bench-build: bench-deps
	go build -o $(BENCH_BIN) ./bench

# Full run: 3 repetitions, up to 10,000 subscribers; see bench/README.md.
bench: bench-build
	$(BENCH_BIN) $(BENCH_FLAGS)

# Small sizes, about two minutes; CI runs this one.
bench-quick: bench-build
	$(BENCH_BIN) -quick $(BENCH_FLAGS)
