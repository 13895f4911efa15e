# Builds every libFuzzer target t/fuzz/fuzz_*.c with clang, libFuzzer,
# AddressSanitizer and UBSan against the whole core (lib/*.c as one static
# archive: a target links only the objects it uses). A new fuzz_NAME.c
# joins without any change here. scripts/fuzz.sh builds and runs them.
#   make -f t/fuzz/fuzz.mk -j2            every target
#   make -f t/fuzz/fuzz.mk fuzz-targets   the names of the targets
#   make -f t/fuzz/fuzz.mk clean
ROOT    := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../..)
FUZZ_CC ?= clang

PKGS     := jansson libcurl hiredis libjwt libcrypto libpcre2-8
CPPFLAGS_ALL := -I$(ROOT)/lib $(shell apr-1-config --cppflags --includes) \
                $(shell apu-1-config --includes) $(shell pkg-config --cflags $(PKGS))
LIBS_ALL := $(shell pkg-config --libs $(PKGS)) $(shell apu-1-config --link-ld) \
            $(shell apr-1-config --link-ld) -lpthread
# UB aborts like a memory error does, so the fuzzer reports it
# the warnings of configure.ac, as errors
CFLAGS_FUZZ := -g -O1 -Wall -Wextra -Wno-unused-parameter -Werror -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined

OBJDIR   := $(ROOT)/t/fuzz/obj
# bff_fetch_nocurl.c stands in for bff_fetch_curl.c in builds without libcurl
LIB_OBJS := $(patsubst $(ROOT)/lib/%.c,$(OBJDIR)/%.o,\
                $(filter-out %/bff_fetch_nocurl.c,$(wildcard $(ROOT)/lib/*.c)))
ARCHIVE  := $(OBJDIR)/libbffcore-fuzz.a
HDRS     := $(wildcard $(ROOT)/lib/*.h)
FUZZERS  := $(patsubst %.c,%,$(wildcard $(ROOT)/t/fuzz/fuzz_*.c))

.PHONY: all fuzz-targets clean

all: $(FUZZERS)

fuzz-targets:
	@for f in $(notdir $(FUZZERS)); do echo $$f; done

$(OBJDIR)/%.o: $(ROOT)/lib/%.c $(HDRS) | $(OBJDIR)
	$(FUZZ_CC) $(CFLAGS_FUZZ) -fsanitize=fuzzer-no-link $(CPPFLAGS_ALL) \
	    -c -o $@ $<

$(ARCHIVE): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(ROOT)/t/fuzz/fuzz_%: $(ROOT)/t/fuzz/fuzz_%.c $(ARCHIVE) $(HDRS)
	$(FUZZ_CC) $(CFLAGS_FUZZ) -fsanitize=fuzzer $(CPPFLAGS_ALL) -o $@ $< \
	    $(ARCHIVE) $(LIBS_ALL)

$(OBJDIR):
	mkdir -p $@

clean:
	rm -rf $(OBJDIR) $(FUZZERS)
