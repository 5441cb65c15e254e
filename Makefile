# Ringmaster build. `make help` lists the targets.
# Modes: release (build/release), asan (ASan+UBSan), tsan (ThreadSanitizer), fuzz (libFuzzer).

PREFIX ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

DEB_PACKAGES := build-essential clang libclang-rt-14-dev liburing-dev libmimalloc-dev \
	libbearssl-dev libck-dev libjansson-dev libcriterion-dev pkg-config curl wrk nginx-light \
	openssl redis-server gnuplot-nox python3 prometheus

LIB_SOURCES := $(filter-out core/main.c,$(wildcard core/*.c net/*.c store/*.c))
TEST_SOURCES := $(wildcard tests/unit/*.c tests/integration/*.c)
FUZZ_SOURCES := $(wildcard fuzz/fuzz_*.c)
MOCK_SOURCES := $(wildcard bench/mock*.c)
HEADERS := $(wildcard core/*.h net/*.h store/*.h tests/*.h tests/unit/*.h tests/tsan/criterion/*.h) \
	bench/bench_samples.h

CC ?= cc
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -I. -Wall -Wextra -Werror -Wshadow -Wvla \
	-Wno-missing-field-initializers -pthread -DRM_VERSION=\"$(VERSION)\"
LIBS := -luring -lbearssl -lck -ljansson -lpthread -lm

release_CC := $(CC)
release_CFLAGS := $(BASE_CFLAGS) -O2 -g
release_LIBS := -lmimalloc $(LIBS)
asan_CC := $(CC)
asan_CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined -DRM_LIBC_MALLOC -DRM_DEBUG
asan_LIBS := -fsanitize=address,undefined $(LIBS)
tsan_CC := $(CC)
# Criterion cannot start under TSan (Snaipe/Criterion#274), so the TSan test binary uses the
# in-process stand-in in tests/tsan, found first on the include path.
tsan_CFLAGS := -Itests/tsan $(BASE_CFLAGS) -O1 -g -fsanitize=thread -DRM_LIBC_MALLOC -DRM_DEBUG \
	-DCK_USE_CC_BUILTINS=1
tsan_LIBS := -fsanitize=thread $(LIBS)
release_TEST_LIBS := -lcriterion
asan_TEST_LIBS := -lcriterion
tsan_TEST_LIBS :=
tsan_TEST_EXTRA := build/tsan/tests/tsan/runner.o
fuzz_CC := clang
fuzz_CFLAGS := $(BASE_CFLAGS) -O1 -g -fsanitize=fuzzer-no-link,address,undefined \
	-DRM_LIBC_MALLOC -DRM_DEBUG -Wno-unused-command-line-argument
fuzz_LIBS := -fsanitize=fuzzer,address,undefined $(LIBS)

.PHONY: all help deps test test-unit test-asan test-tsan fuzz fuzz-smoke bench run install \
	clean ringmaster consistency-long scenario

all: deps build/release/ringmaster build/release/libringmaster.a build/release/state-bench \
	build/release/ringmaster-mock build/release/store-bench build/release/client-bench \
	build/release/openloop build/release/commit-paths

help:
	@echo "make deps        install missing Debian packages (apt-get)"
	@echo "make all         release build: build/release/ringmaster, libringmaster.a"
	@echo "make run         build and run the engine on its embedded default config"
	@echo "make test        build and run unit + integration tests, then the fuzz smoke run"
	@echo "make test-asan   the tests under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make test-tsan   the cross-core tests under ThreadSanitizer"
	@echo "make consistency-long  the SIGKILL consistency harness, long (RM_CONSISTENCY_CYCLES,"
	@echo "                 _CLIENTS, _KEYS, _SEED); prints the history's summary"
	@echo "make fuzz        build the libFuzzer targets; make fuzz-smoke runs each briefly"
	@echo "make bench       run the peer benchmarks in bench/"
	@echo "make scenario    the production-failure scenario at 1x..1000x (SCENARIO_SECONDS=180)"
	@echo "make install     PREFIX=$(PREFIX) DESTDIR=: binary, library, header, pkg-config"

# Installs only what is missing, quietly when everything is present.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "deps: run 'make deps' as root to install:$$missing"; exit 1; fi; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null \
			|| { echo "deps: apt-get install failed for:$$missing"; exit 1; }; \
	fi

define mode_rules
build/$(1)/%.o: %.c $(HEADERS) | deps
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$($(1)_CFLAGS) -c $$< -o $$@

build/$(1)/libringmaster.a: $$(LIB_SOURCES:%.c=build/$(1)/%.o)
	@rm -f $$@
	ar rcs $$@ $$^

build/$(1)/ringmaster: build/$(1)/core/main.o build/$(1)/libringmaster.a
	$$($(1)_CC) $$($(1)_CFLAGS) $$^ $$($(1)_LIBS) -o $$@

$$(MOCK_SOURCES:%.c=build/$(1)/%.o): $$(wildcard bench/mock*.h)

build/$(1)/ringmaster-mock: build/$(1)/bench/mock.o \
		$$(filter-out build/$(1)/bench/mock.o,$$(MOCK_SOURCES:%.c=build/$(1)/%.o)) \
		build/$(1)/libringmaster.a
	$$($(1)_CC) $$($(1)_CFLAGS) $$^ $$($(1)_LIBS) -o $$@

build/$(1)/state-bench: bench/state_bench.c | deps
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$($(1)_CFLAGS) $$< -o $$@

build/$(1)/openloop: bench/openloop.c | deps
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$($(1)_CFLAGS) $$< -o $$@

build/$(1)/commit-paths: bench/commit_paths.c | deps
	@mkdir -p $$(dir $$@)
	$$($(1)_CC) $$($(1)_CFLAGS) $$< -luring -o $$@

build/$(1)/store-bench: build/$(1)/bench/store_bench.o build/$(1)/bench/bench_samples.o \
		build/$(1)/libringmaster.a
	$$($(1)_CC) $$($(1)_CFLAGS) $$^ $$($(1)_LIBS) -o $$@

build/$(1)/client-bench: build/$(1)/bench/client_bench.o build/$(1)/bench/bench_samples.o \
		build/$(1)/libringmaster.a
	$$($(1)_CC) $$($(1)_CFLAGS) $$^ $$($(1)_LIBS) -o $$@

build/$(1)/ringmaster-tests: $$(TEST_SOURCES:%.c=build/$(1)/%.o) build/$(1)/tests/support.o \
		$$($(1)_TEST_EXTRA) build/$(1)/libringmaster.a
	$$($(1)_CC) $$($(1)_CFLAGS) $$^ $$($(1)_TEST_LIBS) $$($(1)_LIBS) -o $$@
endef
$(eval $(call mode_rules,release))
$(eval $(call mode_rules,asan))
$(eval $(call mode_rules,tsan))

build/fuzz/%.o: %.c $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(fuzz_CC) $(fuzz_CFLAGS) -c $< -o $@

build/fuzz/libringmaster.a: $(LIB_SOURCES:%.c=build/fuzz/%.o)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: build/fuzz/fuzz/fuzz_%.o build/fuzz/libringmaster.a
	$(fuzz_CC) $(fuzz_CFLAGS) $^ $(fuzz_LIBS) -o $@

FUZZ_TARGETS := $(FUZZ_SOURCES:fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 20

fuzz: deps $(FUZZ_TARGETS)

# Runs every target on its seed corpus plus FUZZ_SECONDS of new inputs; any crash, leak or
# sanitizer report fails the run. New inputs go to a scratch directory, not the repo.
fuzz-smoke: fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t#build/fuzz/fuzz_}; scratch=$$(mktemp -d); \
		echo "fuzz-smoke: $$name ($(FUZZ_SECONDS)s)"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=build/fuzz/crash-$$name- $$scratch fuzz/corpus/$$name \
			>build/fuzz/$$name.log 2>&1 || { tail -40 build/fuzz/$$name.log; rm -rf $$scratch; exit 1; }; \
		rm -rf $$scratch; tail -1 build/fuzz/$$name.log; \
	done

test-unit: deps build/release/ringmaster build/release/ringmaster-mock \
		build/release/ringmaster-tests
	RINGMASTER_BIN=$(CURDIR)/build/release/ringmaster \
	RINGMASTER_MOCK=$(CURDIR)/build/release/ringmaster-mock \
		build/release/ringmaster-tests --jobs 2 --timeout 120

# Sequential, so the test summary and the fuzz results do not interleave.
test:
	$(MAKE) test-unit
	$(MAKE) fuzz-smoke

test-asan: deps build/asan/ringmaster build/asan/ringmaster-mock \
		build/asan/ringmaster-tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	RINGMASTER_BIN=$(CURDIR)/build/asan/ringmaster \
	RINGMASTER_MOCK=$(CURDIR)/build/asan/ringmaster-mock \
		build/asan/ringmaster-tests --jobs 2 --timeout 300

# Cross-core code: the reactor mailboxes, metrics merging, the store's lock-free readers.
test-tsan: deps build/tsan/ringmaster build/tsan/ringmaster-mock \
		build/tsan/ringmaster-tests
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	RINGMASTER_BIN=$(CURDIR)/build/tsan/ringmaster \
	RINGMASTER_MOCK=$(CURDIR)/build/tsan/ringmaster-mock \
		build/tsan/ringmaster-tests

# The crash and consistency harness of `make test` (tests/integration/test_consistency.c), run
# longer.
RM_CONSISTENCY_CYCLES ?= 100
RM_CONSISTENCY_CLIENTS ?= 12
RM_CONSISTENCY_KEYS ?= 8
consistency-long: deps build/release/ringmaster build/release/ringmaster-mock \
		build/release/ringmaster-tests
	RM_CONSISTENCY_CYCLES=$(RM_CONSISTENCY_CYCLES) RM_CONSISTENCY_CLIENTS=$(RM_CONSISTENCY_CLIENTS) \
	RM_CONSISTENCY_KEYS=$(RM_CONSISTENCY_KEYS) \
	RINGMASTER_BIN=$(CURDIR)/build/release/ringmaster \
	RINGMASTER_MOCK=$(CURDIR)/build/release/ringmaster-mock \
		build/release/ringmaster-tests --filter 'consistency/*' --jobs 1 --timeout 3600

bench: all
	bash bench/http_vs_nginx.sh
	bash bench/state_vs_redis.sh

# The production-failure scenario at every volume (pilot, 10x, 100x, 1000x); CI runs one
# minute of 10x with --check.
SCENARIO_SECONDS ?= 180
scenario: all
	bash bench/scenario.sh --seconds $(SCENARIO_SECONDS) --out build/scenario

run: all
	bash bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 build/release/ringmaster $(DESTDIR)$(PREFIX)/bin/ringmaster
	install -m 644 build/release/libringmaster.a $(DESTDIR)$(PREFIX)/lib/libringmaster.a
	install -m 644 core/ringmaster.h $(DESTDIR)$(PREFIX)/include/ringmaster.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' ringmaster.pc.in \
		>$(DESTDIR)$(PREFIX)/lib/pkgconfig/ringmaster.pc

clean:
	rm -rf build
