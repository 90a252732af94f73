# Fan-out benchmark (issue #7): the appliance against Mosquitto, side by side.
# Included from the top Makefile. Needs Debian's mosquitto package (it ships
# mosquitto and mosquitto_passwd). Both targets only report: timings never
# fail a build.

BENCH_BIN   ?= bin/firehose-bench
BENCH_FLAGS ?=

.PHONY: bench bench-quick bench-build

bench-build:
	go build -o $(BENCH_BIN) ./bench

# Full run: 3 repetitions, up to 10,000 subscribers; about 9 minutes.
bench: bench-build
	$(BENCH_BIN) $(BENCH_FLAGS)

# Small sizes, under two minutes; CI runs this one.
bench-quick: bench-build
	$(BENCH_BIN) -quick $(BENCH_FLAGS)
