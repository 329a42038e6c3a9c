# dchat: a distributed chat cluster (discovery daemon, chat node, bench).
#
#   make          build the three programs under build/bin (optimised)
#   make run      build, start discovery + 3 nodes on loopback, run the bench
#   make test     build with ASan+UBSan under build/test, run unit + e2e tests
#   make deps     install missing Debian packages (apt-get), nothing if all there
#
# Third-party code comes only from Debian packages; llhttp's C sources are
# compiled from /usr/share/llhttp into build/, never copied into the tree.

BUILD    ?= build
SANITIZE ?=
CC       ?= cc
PREFIX   ?= /usr/local
VERSION  := 0.1.0

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

PKGS     := libuv jansson libcrypto sqlite3
OPT      ?= -O2 -g
XCFLAGS  := $(OPT) $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
            -Wno-unused-parameter -fno-strict-aliasing \
            -DDCHAT_VERSION='"$(VERSION)"' -I. -I$(LLHTTP_INC) -MMD -MP
LDLIBS   := -lwslay $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

ifneq ($(SANITIZE),)
XCFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

COMMON_SRC    := $(sort $(wildcard common/*.c))
DISCOVERY_SRC := $(sort $(wildcard discovery/*.c))
NODE_SRC      := $(sort $(wildcard node/*.c))
BENCH_SRC     := $(sort $(wildcard bench/*.c))
UNIT_SRC      := $(sort $(wildcard tests/unit/test_*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
# Each program's modules (all but main.c) also go into a static library so
# that unit tests can link them.
lib_of = $(call obj,$(filter-out %/main.c,$(1)))

LIBLLHTTP    := $(BUILD)/lib/libllhttp.a
LIBCOMMON    := $(BUILD)/lib/libcommon.a
LIBDISCOVERY := $(BUILD)/lib/libdiscovery.a
LIBNODE      := $(BUILD)/lib/libnode.a
LIBBENCH     := $(BUILD)/lib/libbench.a
ALL_LIBS     := $(LIBDISCOVERY) $(LIBNODE) $(LIBBENCH) $(LIBCOMMON) $(LIBLLHTTP)

PROGRAMS   := $(patsubst %/main.c,%,$(wildcard discovery/main.c node/main.c bench/main.c))
BINS       := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps run test unit e2e clean install fuzz help
all: deps $(BINS)

# --- dependencies ---------------------------------------------------------
deps:
	@sh scripts/deps.sh

# --- libraries --------------------------------------------------------------
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wextra -Wshadow -Werror,$(XCFLAGS)) -Wno-unused -c $< -o $@

$(LIBLLHTTP): $(patsubst $(LLHTTP_SRC)/%.c,$(BUILD)/obj/llhttp/%.o,$(wildcard $(LLHTTP_SRC)/*.c))
$(LIBCOMMON): $(call lib_of,$(COMMON_SRC))
$(LIBDISCOVERY): $(call lib_of,$(DISCOVERY_SRC))
$(LIBNODE): $(call lib_of,$(NODE_SRC))
$(LIBBENCH): $(call lib_of,$(BENCH_SRC))

$(BUILD)/lib/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -c $< -o $@

# --- programs ---------------------------------------------------------------
$(BUILD)/bin/%: $(BUILD)/obj/%/main.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)

# --- tests ------------------------------------------------------------------
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS) -lcmocka

TEST_BUILD := build/test
TEST_FLAGS := BUILD=$(TEST_BUILD) SANITIZE=address,undefined OPT="-O1 -g"

test: deps
	@$(MAKE) --no-print-directory $(TEST_FLAGS) \
	    $(addprefix $(TEST_BUILD)/bin/,$(PROGRAMS)) \
	    $(patsubst $(BUILD)/%,$(TEST_BUILD)/%,$(UNIT_BINS))
	@sh scripts/run-tests.sh $(TEST_BUILD)

unit: deps
	@$(MAKE) --no-print-directory $(TEST_FLAGS) $(patsubst $(BUILD)/%,$(TEST_BUILD)/%,$(UNIT_BINS))
	@sh scripts/run-tests.sh $(TEST_BUILD) unit

e2e: deps
	@$(MAKE) --no-print-directory $(TEST_FLAGS) $(addprefix $(TEST_BUILD)/bin/,$(PROGRAMS))
	@sh scripts/run-tests.sh $(TEST_BUILD) e2e

run: all
	@sh scripts/run.sh $(BUILD)/bin

# Installed under prefixed names: a binary called "node" on the PATH would
# shadow Node.js.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/bin/discovery $(DESTDIR)$(PREFIX)/bin/dchat-discovery
	install -m 755 $(BUILD)/bin/node      $(DESTDIR)$(PREFIX)/bin/dchat-node
	install -m 755 $(BUILD)/bin/bench     $(DESTDIR)$(PREFIX)/bin/dchat-bench

clean:
	rm -rf build

help:
	@sed -n '1,12p' Makefile

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
