# grappe build. Sources are found by convention so that adding a file needs
# no edit here:
#   DIR/*.c            library code, linked into both programs and the tests
#   DIR/*_main.c       a program (vmm/node_main.c -> grappe-node, mgmt/grappe_main.c -> grappe)
#   DIR/test_*.c       a cmocka unit test, run by `make check`
#   DIR/*_fixture.c    test code shared by unit tests, linked into each (an archive:
#                      a test takes only what it uses)
#   DIR/fuzz_*.c       a libFuzzer target, run briefly by `make check`

SRC_DIRS  := vmm dsm fabric vcpu-sched blockdev mgmt
CC        ?= gcc
PKGS      := libxml-2.0 libsodium json-c liburing
# Asked of pkg-config when a recipe first needs them, not when make reads this
# file: on a fresh machine `make check` installs the packages (the deps
# target, an order-only prerequisite of every compile) after reading it.
# A pkg-config that fails stops the build here, not at a missing header.
pkg_config = $(eval _pc := $(shell pkg-config $(1) $(PKGS) || echo __FAILED__))$(if \
	$(filter __FAILED__,$(_pc)),$(error pkg-config $(1) $(PKGS) failed: run make deps),$(_pc))
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkg_config,--cflags))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(call pkg_config,--libs))$(PKG_LIBS)
WARN      := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS    ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -I. $(PKG_CFLAGS) -D_GNU_SOURCE -MMD -MP
LDLIBS    = $(PKG_LIBS) -lpthread -lm
SAN       := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

ALL_SRCS  := $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c))
MAIN_SRCS := $(filter %_main.c,$(ALL_SRCS))
FIXT_SRCS := $(filter %_fixture.c,$(ALL_SRCS))
TEST_SRCS := $(filter-out $(FIXT_SRCS),$(filter $(addsuffix /test_%.c,$(SRC_DIRS)),$(ALL_SRCS)))
FUZZ_SRCS := $(filter $(addsuffix /fuzz_%.c,$(SRC_DIRS)),$(ALL_SRCS))
LIB_SRCS  := $(filter-out $(MAIN_SRCS) $(TEST_SRCS) $(FUZZ_SRCS) $(FIXT_SRCS),$(ALL_SRCS))

B         := build
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/obj/%.o)
ASAN_OBJS := $(LIB_SRCS:%.c=$(B)/asan/%.o)
FIXT_OBJS := $(FIXT_SRCS:%.c=$(B)/asan/%.o)
TESTS     := $(foreach t,$(TEST_SRCS),$(B)/tests/$(notdir $(t:.c=)))
FUZZERS   := $(foreach f,$(FUZZ_SRCS),$(B)/fuzz/$(notdir $(f:.c=)))
PROGS     := $(B)/bin/grappe-node $(B)/bin/grappe $(B)/bin/fabric-bench \
             $(B)/bin/dsm-stress $(B)/bin/dsm-bench $(B)/bin/volume-bench

.PHONY: all check unit-check fuzz-check model-check system-check guest lab demo bench deps clean soak
all: $(PROGS)

$(B)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/asan/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -O1 -c $< -o $@

$(B)/lib/libgrappe.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/lib/libgrappe-asan.a: $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/lib/libfixtures-asan.a: $(FIXT_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/bin/grappe-node: vmm/node_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@

$(B)/bin/grappe: mgmt/grappe_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@

# Tools built from DIR/NAME_main.c like the programs above.
$(B)/bin/fabric-bench: fabric/fabric_bench_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@
$(B)/bin/dsm-stress: dsm/dsm_stress_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@
$(B)/bin/dsm-bench: dsm/dsm_bench_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@
$(B)/bin/volume-bench: blockdev/volume_bench_main.c $(B)/lib/libgrappe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/lib/libgrappe.a $(LDLIBS) -o $@

# Unit tests are built with ASan and UBSan: they are where memory errors in
# parsers and device models are cheapest to find.
define test_rule
$(B)/tests/$(notdir $(1:.c=)): $(1) $(B)/lib/libfixtures-asan.a $(B)/lib/libgrappe-asan.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) $$(SAN) -O1 $$< $(B)/lib/libfixtures-asan.a $(B)/lib/libgrappe-asan.a \
		$$(LDLIBS) -lcmocka -o $$@
endef
$(foreach t,$(TEST_SRCS),$(eval $(call test_rule,$(t))))

# The library is compiled once with fuzzer instrumentation and shared by
# every target.
FUZZ_CFLAGS = -std=gnu11 -g -O1 -I. $(PKG_CFLAGS) -D_GNU_SOURCE -MMD -MP -Wno-gnu-variable-sized-type-not-at-end
FUZZ_OBJS := $(LIB_SRCS:%.c=$(B)/fuzzobj/%.o)
$(B)/fuzzobj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

define fuzz_rule
$(B)/fuzz/$(notdir $(1:.c=)): $(1) $(FUZZ_OBJS)
	@mkdir -p $$(dir $$@)
	clang $$(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined $$< $(FUZZ_OBJS) $$(LDLIBS) -o $$@
endef
$(foreach f,$(FUZZ_SRCS),$(eval $(call fuzz_rule,$(f))))

unit-check: $(TESTS) $(B)/bin/dsm-stress
	@set -e; for t in $(TESTS); do echo "== $$t"; $$t; done
	@echo "== dsm-stress: node processes sharing pages, tiny caches"
	$(B)/bin/dsm-stress --seconds 5
	@echo "== dsm-stress: the same with holds and bursts (what the VMM runs)"
	$(B)/bin/dsm-stress --seconds 5 --hold 200 --hold-max 5000
	@echo "== dsm-stress: the same with turns (what the VMM runs with 3 nodes or more)"
	$(B)/bin/dsm-stress --seconds 5 --hold 200 --hold-max 5000 --turn 20000

# Each target's short run in make check (a clean clone starts from the
# seeds); make soak runs each for FUZZ_SOAK_SECONDS.
FUZZ_SECONDS ?= 10
FUZZ_SOAK_SECONDS ?= 120
fuzz-check: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
		n=$$(basename $$f); mkdir -p $(B)/fuzz-corpus/$$n $(B)/fuzz-logs; \
		seeds=$$(ls -d tests/fuzz-seeds/$$n 2>/dev/null || true); \
		echo "== $$f ($(FUZZ_SECONDS)s)"; \
		if ! $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
			-artifact_prefix=$(B)/fuzz-logs/$$n- $(B)/fuzz-corpus/$$n $$seeds \
			>$(B)/fuzz-logs/$$n.log 2>&1; then \
			tail -40 $(B)/fuzz-logs/$$n.log; echo "fuzz-check: $$n failed"; exit 1; \
		fi; \
		tail -1 $(B)/fuzz-logs/$$n.log; \
	done

model-check:
	@if ls dsm/model/*.pml >/dev/null 2>&1; then ci/check-models; fi

guest: all
	ci/build-guest

# Everything that boots a guest runs inside the lab (docs/testing.md).
system-check: all guest
	ci/system-check

# Long runs kept out of make check: the system tests marked slow (4 DSM
# nodes with full counts, in the lab), a long dsm-stress with tiny caches
# and bursts, and every fuzz target for FUZZ_SOAK_SECONDS.
soak: all guest $(FUZZERS)
	$(B)/bin/dsm-stress --seconds 120 --cache 4 --hold 200 --hold-max 5000
	$(B)/bin/dsm-stress --seconds 120 --cache 4 --hold 200 --hold-max 5000 --turn 20000
	$(MAKE) fuzz-check FUZZ_SECONDS=$(FUZZ_SOAK_SECONDS)
	ci/lab --cpus 1 --timeout 5400 -- python3 -m pytest -q -m slow tests/

check: deps all unit-check fuzz-check model-check system-check

deps:
	@ci/install-deps

demo: deps all guest
	ci/demo

bench: deps all guest
	bench/run

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
