# gsau-stream: the two commands of the README, plus benchmarks and checks.
#
#   make demo    install what is missing, build, run the zero-setup demo
#   make test    install what is missing, build, run the whole test suite
#
# Variables: BUILD (build dir), JOBS, WERROR=ON|OFF, BUILD_TYPE, CMAKE_ARGS, DEMO_ARGS (flags of
# `gsau demo`, e.g. DEMO_ARGS="--events 50000 --rate 2000"), FUZZ_RUNS (fuzz-decoder's runs).

BUILD      ?= build
JOBS       ?= $(shell nproc)
WERROR     ?= OFF
BUILD_TYPE ?= RelWithDebInfo
CMAKE_ARGS ?=
DEMO_ARGS  ?=

.PHONY: all setup configure build test test-unit test-kafka demo clean \
        test-asan test-tsan bench-replay bench-state bench-train bench-online bench-online-quality bench-rank bench-ingest bench-freshness bench-due-users \
        fuzz-decoder reliability

all: build

setup:
	@scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DGSAU_WERROR=$(WERROR) \
	  -DGSAU_REQUIRE_LEARNER=ON $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

# CTest counts a binary whose cases passed or were skipped as passed: after it, the skipped
# cases are listed by name and reason (scripts/test_skips.py), and CTest's status is kept.
# $(1): the build dir; $(2): ctest's arguments.
define run_ctest
	rm -rf $(1)/test-results
	cd $(1) && rc=0 && { ctest $(2) || rc=$$?; } && { python3 $(CURDIR)/scripts/test_skips.py test-results || true; } \
	  && exit $$rc
endef

test: build
	$(call run_ctest,$(BUILD),--output-on-failure --no-tests=error --timeout 1500 -j2)

test-unit: build
	$(call run_ctest,$(BUILD),--output-on-failure -L unit -j2)

test-kafka: build
	$(call run_ctest,$(BUILD),--output-on-failure -L kafka -j2)

demo: build
	$(BUILD)/gsau demo $(DEMO_ARGS)

# Sanitizer builds: ASan+UBSan, and TSan, each in its own build directory.
test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_ARGS="-DGSAU_SANITIZE=address -DGSAU_WITH_LEARNER=OFF"

# TSan runs the unit tests only: librdkafka starts its threads with C11 thrd_create, which neither
# GCC 12's nor clang 14's TSan intercepts, so every Kafka test crashes in its first allocation
# on such a thread (a TSan runtime without a state for it).
test-tsan:
	$(MAKE) build BUILD=build-tsan CMAKE_ARGS="-DGSAU_SANITIZE=thread -DGSAU_WITH_LEARNER=OFF"
	$(call run_ctest,build-tsan,--output-on-failure --timeout 1500 -j2 -L unit)

# libFuzzer (clang) on the event decoder, ASan+UBSan, 1,000,000 inputs from a small seed corpus.
FUZZ_RUNS ?= 1000000
fuzz-decoder: setup
	@CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGSAU_FUZZ=ON \
	  -DGSAU_WITH_LEARNER=OFF -DGSAU_BUILD_TESTS=OFF -DGSAU_BUILD_BENCH=OFF \
	  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
	@cmake --build build-fuzz --target fuzz_decoder -j$(JOBS)
	@mkdir -p build-fuzz/corpus && cp -n fuzz/corpus/decoder/* build-fuzz/corpus/ 2>/dev/null || true
	build-fuzz/fuzz/fuzz_decoder -runs=$(FUZZ_RUNS) -max_len=4096 -print_final_stats=1 build-fuzz/corpus

# The reliability suite at the issue's sizes (R1-R7; about 50 minutes, the soak alone 30): one
# summary row per check, then BENCH reliability passed=<n> failed=<n> skipped=<n>; the summary,
# the soak's CSV and plot go to docs/results/reliability/. `make test` runs its short variant.
reliability: build
	GSAU_RELIABILITY=full GSAU_RELIABILITY_OUT=docs/results/reliability $(BUILD)/tests/reliability/reliability_test

bench-ingest: build
	$(BUILD)/bench/ingest/bench_ingest

bench-replay: build
	scripts/bench_replay.sh $(BUILD)

# gsau run at 2,000 clicks/s for 60 s: click produce -> the user's embedding consumed downstream.
bench-freshness: build
	scripts/bench_freshness.sh $(BUILD)

bench-state: build
	$(BUILD)/bench/state/bench_state

# A refresh of every user (1/4 to 4 million) under a trickle of clicks: what the user thread's
# due set costs a flush, the set before it was split and DueUsers side by side (~1 min).
bench-due-users: build
	$(BUILD)/bench/pipeline/bench_due_users

bench-train: build
	$(BUILD)/bench/learner/bench_train

# One continual-training step, incremental graph propagation vs a full LightGCN pass (Beauty).
bench-online: build
	$(BUILD)/bench/learner/bench_online

# A learner round's prequential ranking (512 clicks among 1M items): grouped vs one whole matrix.
bench-rank: build
	$(BUILD)/bench/learner/bench_rank

# Prequential quality of the incremental graph propagation against the full one (Beauty, ~13 min
# on 2 cores); the CSV of windows goes to docs/results/online-quality/.
bench-online-quality: build
	@mkdir -p docs/results/online-quality
	$(BUILD)/bench/learner/bench_online_quality --out docs/results/online-quality/windows.csv

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
