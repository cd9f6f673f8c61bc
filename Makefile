# nbdmirror. `make` builds build/nbdmirror; `make check` installs what the
# tests need, builds, and runs every test; `make demo` shows it working.

CC      ?= gcc
CFLAGS  ?= -O2 -g
# `make SANITIZE=address,undefined [check]` builds with those sanitizers into
# build-san/ (and runs every test against that build); SANITIZE=1 means the same
ifeq ($(SANITIZE),1)
override SANITIZE = address,undefined
endif
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=$(SANITIZE)
BUILD   = build-san
endif
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
LDLIBS  = -luring -laio -lpthread -lgnutls
BUILD   ?= build

SRCS    = $(wildcard src/*.c src/*/*.c)
OBJS    = $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS = $(filter-out $(BUILD)/src/main.o $(BUILD)/src/cmd_%.o,$(OBJS))
UNITS   = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))
TOOLS   = $(patsubst tools/%.c,$(BUILD)/tools/%,$(wildcard tools/*.c))

# libFuzzer targets (tests/fuzz): clang, the daemon's own sources built with
# the fuzzer's coverage and ASan+UBSan into build-fuzz/
FUZZ_BUILD   = build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_CFLAGS  = -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined -std=gnu11 -Wall -Wextra -Werror -Iinclude -Isrc \
               -D_GNU_SOURCE
FUZZ_LIBOBJS = $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(filter-out src/main.c src/cmd_%.c,$(SRCS)))
FUZZERS      = $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))

# Debian packages: to build, to test, and to benchmark against (nbdfuse is
# in libnbd-bin on Debian 12; naming it would run apt-get every time).
DEPS_BUILD = gcc make pkg-config liburing-dev libaio-dev libgnutls28-dev
DEPS_FUZZ  = clang libclang-rt-14-dev
DEPS_TEST  = libnbd-bin python3-libnbd fio qemu-utils e2fsprogs fuse3 \
             util-linux iproute2 nbd-client reiserfsprogs kmod procps valgrind nbdkit \
             gnutls-bin systemd man-db strace curl prometheus python3-prometheus-client $(DEPS_FUZZ)
DEPS_BENCH = nbdkit qemu-system-common qemu-block-extra iperf3

.PHONY: all check demo bench deps deps-test deps-bench clean units tools fuzzers fuzz install

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the program, its man pages,
# the systemd unit and the Pacemaker agent. systemd also reads units from
# /usr/local/lib/systemd/system; Pacemaker finds agents only under
# /usr/lib/ocf, whatever PREFIX is.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
OCFDIR     ?= /usr/lib/ocf/resource.d/nbdmirror
SYSCONFDIR ?= /etc

all: $(BUILD)/nbdmirror tools

$(BUILD)/nbdmirror: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tools/%: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $<

units: $(UNITS)
tools: $(TOOLS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIBOBJS)
	clang $(FUZZ_CFLAGS) -MMD -MP -MF $@.d -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) $(LDLIBS)

fuzzers: $(FUZZERS)

# Installs only what is missing, so a prepared machine makes no apt calls.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# the two-node Pacemaker cluster and the OCF agent's tests (ocf-tester and
# ocf-shellfuncs are in resource-agents, xmllint in libxml2-utils)
DEPS_CLUSTER = corosync pacemaker pacemaker-cli-utils resource-agents libxml2-utils
DEPS_TEST += $(DEPS_CLUSTER)

deps:
	$(call apt_install,$(DEPS_BUILD))
deps-test: deps
	$(call apt_install,$(DEPS_TEST))
deps-bench: deps-test
	$(call apt_install,$(DEPS_BENCH))

check: deps-test
	$(MAKE) all units fuzzers
	NBDM=$(CURDIR)/$(BUILD)/nbdmirror tests/run

# each fuzzer for FUZZ_SECONDS (default 300), from its seeds and what
# earlier runs found (build-fuzz/corpus/)
fuzz: deps-test
	$(MAKE) fuzzers
	tests/fuzz/run $(FUZZ_SECONDS)

demo: deps-test
	$(MAKE) all
	tools/demo

bench: deps-bench
	$(MAKE) all
	bench/run
	bench/repl
	bench/recovery

install: $(BUILD)/nbdmirror
	install -D -m 0755 $(BUILD)/nbdmirror $(DESTDIR)$(SBINDIR)/nbdmirror
	install -D -m 0644 man/nbdmirror.8 $(DESTDIR)$(MANDIR)/man8/nbdmirror.8
	install -D -m 0644 man/nbdmirror.conf.5 $(DESTDIR)$(MANDIR)/man5/nbdmirror.conf.5
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/systemd/nbdmirror@.service \
	    >$(DESTDIR)$(UNITDIR)/nbdmirror@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/nbdmirror@.service
	install -D -m 0755 dist/ocf/nbdmirror $(DESTDIR)$(OCFDIR)/nbdmirror
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/nbdmirror
	install -m 0644 dist/r0.res.example $(DESTDIR)$(SYSCONFDIR)/nbdmirror/r0.res.example

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)

-include $(OBJS:.o=.d) $(FUZZ_LIBOBJS:.o=.d) $(FUZZERS:=.d)
