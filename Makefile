# dchat: a distributed chat cluster (discovery daemon, chat node, bench).
#
#   make          build the three programs under build/bin (optimised)
#   make run      build, start discovery + 3 nodes on loopback, run the bench
#   make test     build with ASan+UBSan under build/test, run unit + e2e tests
#                 (the tools are compiled too, so that they never rot)
#   make install  build and install as dchat-discovery, dchat-node, dchat-bench
#   make deps     install the missing Debian packages that building needs
#   make fuzz     build the libFuzzer targets (clang) under build/fuzz and run
#                 each for FUZZ_SECONDS (60); a crash fails it
#   make tools    build send-floor and conn-scale (docs/PERFORMANCE.md,
#                 "Connection scale") and netwire (a switch between TAP
#                 devices that delays, loses and cuts) into build/bin
#   make faults   only the fault tests (root: a cluster in network namespaces,
#                 scripts/netns-cluster.sh), one checker line per fault
#
# Third-party code comes only from Debian packages; llhttp's C sources are
# compiled from /usr/share/llhttp into build/, never copied into the tree.
#
# Two stages. The public targets above first run scripts/deps.sh, which
# installs what is missing, then build in a second make. They must: make
# expands $(shell pkg-config ...) and $(wildcard ...) when it reads this
# file, and on a bare machine that is before any package is installed. The
# inner targets (programs, test-build, the files under build/) expect the
# packages to be there and say so when they are not.

BUILD    ?= build
SANITIZE ?=
CC       ?= cc
PREFIX   ?= /usr/local
VERSION  := 0.1.0

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

PKGS       := libuv jansson libssl libcrypto sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# -O3: about 5 % fewer instructions per message than -O2 (docs/PERFORMANCE.md,
# "A fifth round"). The test and fuzz builds set their own (-O1).
OPT      ?= -O3 -g
XCFLAGS  := $(OPT) $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
            -Wno-unused-parameter -fno-strict-aliasing \
            -DDCHAT_VERSION='"$(VERSION)"' -I. -I$(LLHTTP_INC) $(PKG_CFLAGS) -MMD -MP
LDLIBS   := $(PKG_LIBS) -lm

ifneq ($(SANITIZE),)
XCFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
else
# Link-time optimisation, for the optimised build only (the sanitizer and
# fuzz builds are for finding bugs, and clang's LTO needs another linker):
# small functions of one file inline into the hot paths of another
# (msgbuf, outq, ws, the store's lookups), about 2 % fewer instructions
# per message. gcc's plugin (/usr/lib/bfd-plugins) lets ar index the
# objects. LTO= turns it off.
LTO     ?= -flto=auto
XCFLAGS += $(LTO)
LDFLAGS += $(if $(LTO),$(OPT) $(LTO))
endif

COMMON_SRC    := $(sort $(wildcard common/*.c))
DISCOVERY_SRC := $(sort $(wildcard discovery/*.c))
NODE_SRC      := $(sort $(wildcard node/*.c))
BENCH_SRC     := $(sort $(wildcard bench/*.c))
UNIT_SRC      := $(sort $(wildcard tests/unit/test_*.c))
# The web pages, compiled into the node (node/web.h): scripts/embed-web.sh
# writes them out as C under the build dir.
WEB_SRC       := $(sort $(wildcard web/*))
WEB_GEN       := $(BUILD)/gen/web_files.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
# Each program's modules (all but main.c) also go into a static library so
# that unit tests can link them.
lib_of = $(call obj,$(filter-out %/main.c,$(1)))

# The compiler and flags of the files under $(BUILD), rewritten only when
# they change (another OPT, LTO=, CC): everything built from them depends
# on it, so a change rebuilds them instead of mixing objects of two builds.
FLAGS_FILE := $(BUILD)/flags
FLAGS_NOW   = $(CC) $(XCFLAGS) | $(LDFLAGS) $(LDLIBS)

LIBLLHTTP    := $(BUILD)/lib/libllhttp.a
LIBCOMMON    := $(BUILD)/lib/libcommon.a
LIBDISCOVERY := $(BUILD)/lib/libdiscovery.a
LIBNODE      := $(BUILD)/lib/libnode.a
LIBBENCH     := $(BUILD)/lib/libbench.a
ALL_LIBS     := $(LIBDISCOVERY) $(LIBNODE) $(LIBBENCH) $(LIBCOMMON) $(LIBLLHTTP)

PROGRAMS   := $(patsubst %/main.c,%,$(wildcard discovery/main.c node/main.c bench/main.c))
BINS       := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

TEST_BUILD := build/test
TEST_FLAGS := BUILD=$(TEST_BUILD) SANITIZE=address,undefined OPT="-O1 -g"
TEST_BINS  := $(addprefix $(TEST_BUILD)/bin/,$(PROGRAMS))
TEST_UNITS := $(patsubst $(BUILD)/%,$(TEST_BUILD)/%,$(UNIT_BINS))
SUBMAKE     = $(MAKE) --no-print-directory

FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_FLAGS   := BUILD=$(FUZZ_BUILD) CC=clang SANITIZE=fuzzer-no-link,address,undefined \
                OPT="-O1 -g"
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: FORCE all deps deps-run deps-test deps-fuzz fuzz programs test unit e2e faults run install clean help have-deps
.DEFAULT_GOAL := all

# --- the public targets: dependencies first, then a make that builds ------
all: deps
	@+$(SUBMAKE) programs

deps:
	@sh scripts/deps.sh build
deps-run:
	@sh scripts/deps.sh run
deps-test:
	@sh scripts/deps.sh test
deps-fuzz:
	@sh scripts/deps.sh fuzz

run: deps-run
	@+$(SUBMAKE) programs
	@sh scripts/run.sh $(BUILD)/bin

test: deps-test
	@+$(SUBMAKE) $(TEST_FLAGS) $(TEST_BINS) $(TEST_UNITS) tools
	@sh scripts/run-tests.sh $(TEST_BUILD)

unit: deps-test
	@+$(SUBMAKE) $(TEST_FLAGS) $(TEST_UNITS)
	@sh scripts/run-tests.sh $(TEST_BUILD) unit

e2e: deps-test
	@+$(SUBMAKE) $(TEST_FLAGS) $(TEST_BINS)
	@sh scripts/run-tests.sh $(TEST_BUILD) e2e

faults: deps-test
	@+$(SUBMAKE) $(TEST_FLAGS) $(TEST_BINS) tools
	@DCHAT_BIN_DIR="$(CURDIR)/$(TEST_BUILD)/bin" /usr/bin/python3 -m pytest -q -rfEs -s \
	    -p no:cacheprovider tests/e2e/test_faults.py

# The libFuzzer targets (tests/fuzz/fuzz_*.c), built by clang with the
# program modules instrumented for coverage, ASan and UBSan, then run one
# after another by scripts/fuzz.sh on a scratch copy of their corpus.
# FUZZ_TARGETS="ws_decoder peer_decoder" runs only those.
fuzz: deps-fuzz
	@+$(SUBMAKE) $(FUZZ_FLAGS) $(FUZZ_BINS)
	@sh scripts/fuzz.sh $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Installed under prefixed names: a binary called "node" on the PATH would
# shadow Node.js. Installs from the network only what building needs.
install: deps
	@+$(SUBMAKE) programs
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/bin/discovery $(DESTDIR)$(PREFIX)/bin/dchat-discovery
	install -m 755 $(BUILD)/bin/node      $(DESTDIR)$(PREFIX)/bin/dchat-node
	install -m 755 $(BUILD)/bin/bench     $(DESTDIR)$(PREFIX)/bin/dchat-bench

clean:
	rm -rf build

help:
	@sed -n '1,15p' Makefile

# --- the inner targets: the packages are there ----------------------------
programs: $(BINS)

# Every object and archive waits for this check, so that a build started
# on a machine without the packages says what to do instead of failing on
# a missing header or an undefined reference.
have-deps:
	@pkg-config --exists $(PKGS) && [ -f $(LLHTTP_SRC)/llhttp.c ] || { \
	    echo "make: the build dependencies are missing (libuv, jansson, OpenSSL, SQLite" \
	         "or llhttp); run 'make deps' (as root), or 'make' to do both" >&2; exit 1; }

# --- libraries --------------------------------------------------------------
# make expands a recipe whole before it runs the first line: the directory
# is made in the same expansion, before the file is written into it.
$(FLAGS_FILE): FORCE
	@: $(shell mkdir -p $(dir $@))$(file >$@.new,$(FLAGS_NOW))
	@cmp -s $@.new $@ && rm -f $@.new || mv -f $@.new $@

FORCE:

$(BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c $(FLAGS_FILE) | have-deps
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wextra -Wshadow -Werror,$(XCFLAGS)) -Wno-unused -c $< -o $@

$(LIBLLHTTP): $(patsubst $(LLHTTP_SRC)/%.c,$(BUILD)/obj/llhttp/%.o,$(wildcard $(LLHTTP_SRC)/*.c))
$(LIBCOMMON): $(call lib_of,$(COMMON_SRC))
$(LIBDISCOVERY): $(call lib_of,$(DISCOVERY_SRC))
$(LIBNODE): $(call lib_of,$(NODE_SRC)) $(BUILD)/obj/gen/web_files.o
$(LIBBENCH): $(call lib_of,$(BENCH_SRC))

$(BUILD)/lib/%.a: | have-deps
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: %.c $(FLAGS_FILE) | have-deps
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -c $< -o $@

# The directory is a prerequisite too: adding or removing a file changes
# its time, and the list of files with it.
$(WEB_GEN): $(WEB_SRC) web scripts/embed-web.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-web.sh $@ $(WEB_SRC)

$(BUILD)/obj/gen/web_files.o: $(WEB_GEN) $(FLAGS_FILE) | have-deps
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -c $< -o $@

# --- programs ---------------------------------------------------------------
$(BUILD)/bin/%: $(BUILD)/obj/%/main.o $(ALL_LIBS) $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)

# --- tests ------------------------------------------------------------------
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(ALL_LIBS) $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS) $$(pkg-config --libs cmocka)

# --- fuzz targets: libFuzzer supplies main ----------------------------------
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(ALL_LIBS) $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(ALL_LIBS) $(LDLIBS)

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- tools: standalone measurement programs (libc only) ---------------------
# send-floor (the one-send-per-socket floor) and conn-scale (many idle
# WebSocket clients on one node); docs/PERFORMANCE.md, "Connection scale".
# netwire: a learning switch between TAP devices that impairs its links as
# tc netem would (delay, jitter, loss, cuts), for the fault tests in
# network namespaces on kernels without sch_netem.
TOOLS := $(addprefix $(BUILD)/bin/,send-floor conn-scale netwire)
.PHONY: tools
tools: $(TOOLS)

$(TOOLS): $(BUILD)/bin/%: tools/%.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -o $@ $<
