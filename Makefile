# nbdmirror. `make` builds build/nbdmirror; `make check` installs what the
# tests need, builds, and runs every test; `make demo` shows it working.

CC      ?= gcc
CFLAGS  ?= -O2 -g
# `make SANITIZE=1 ...` builds with AddressSanitizer and UBSan (into build-san/)
ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
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

# Debian packages: to build, to test, and to benchmark against.
DEPS_BUILD = gcc make pkg-config liburing-dev libaio-dev libgnutls28-dev
DEPS_TEST  = libnbd-bin nbdfuse python3-libnbd fio qemu-utils e2fsprogs fuse3 \
             util-linux iproute2 nbd-client reiserfsprogs kmod procps valgrind nbdkit \
             gnutls-bin
DEPS_BENCH = nbdkit qemu-system-common qemu-block-extra iperf3

.PHONY: all check demo bench deps deps-test deps-bench clean units tools

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

# Installs only what is missing, so a prepared machine makes no apt calls.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(DEPS_BUILD))
deps-test: deps
	$(call apt_install,$(DEPS_TEST))
deps-bench: deps-test
	$(call apt_install,$(DEPS_BENCH))

check: deps-test
	$(MAKE) all units
	tests/run

demo: deps-test
	$(MAKE) all
	tools/demo

bench: deps-bench
	$(MAKE) all
	bench/run
	bench/repl
	bench/recovery

clean:
	rm -rf $(BUILD)

-include $(OBJS:.o=.d)
