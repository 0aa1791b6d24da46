# Polymorph build. `make` builds the library and build/polymorph; `make test`
# runs every test; `make SAN=1 test` does the same under address+undefined
# sanitizers in build-san/. Sources are picked up by layer folder, so adding a
# file never means editing this file.

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
PYTHON ?= python3

ifeq ($(SAN),1)
BUILD ?= build-san
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=address,undefined
else
BUILD ?= build
OPT := -O2 -g
LDSAN :=
endif

# -ffp-contract=off: the datapath's numerics are defined operation by
# operation; the compiler must never fuse a multiply and an add on its own.
CFLAGS_ALL := -std=c11 -Wall -Wextra -Werror -Wshadow -Wvla -ffp-contract=off -fno-fast-math \
              -fPIC -Iinclude -I$(BUILD)/gen $(OPT) $(CFLAGS)
LDLIBS := -lm -lpthread

# Layers, bottom up (see docs/architecture.md); cli sits on top of them all.
LAYERS := base numerics lfu kan isa sim runtime kernels models
LIB_SRCS := $(foreach l,$(LAYERS),$(sort $(wildcard src/$(l)/*.c))) $(BUILD)/gen/presets.c
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst $(BUILD)/gen/%,gen/%,$(LIB_SRCS)))
CLI_SRCS := $(sort $(wildcard src/cli/*.c))
CLI_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRCS))
TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TOOL_BINS := $(patsubst tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
PRESETS := $(sort $(wildcard configs/*.cfg))

.PHONY: all test test-c test-py check-docs clean run model fuzz lib tools
all: $(BUILD)/polymorph $(BUILD)/libpolymorph.so $(TEST_BINS) $(TOOL_BINS)

lib: $(BUILD)/libpolymorph.a $(BUILD)/libpolymorph.so

$(BUILD)/obj/%.o: %.c $(wildcard include/polymorph/*.h) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# Presets: configs/*.cfg embedded verbatim, so the file is the one source of truth.
$(BUILD)/gen/presets.c: $(PRESETS) tools/embed_presets.sh
	@mkdir -p $(dir $@)
	sh tools/embed_presets.sh $(PRESETS) > $@.tmp && mv $@.tmp $@

$(BUILD)/libpolymorph.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libpolymorph.so: $(LIB_OBJS)
	$(CC) -shared $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/polymorph: $(CLI_OBJS) $(BUILD)/libpolymorph.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJS) $(BUILD)/libpolymorph.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(wildcard tools/*.h) $(BUILD)/libpolymorph.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -Itools $(LDSAN) -o $@ $< $(BUILD)/libpolymorph.a $(LDLIBS)

$(BUILD)/tools/%: tools/%.c $(wildcard tools/*.h) $(BUILD)/libpolymorph.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDSAN) -o $@ $< $(BUILD)/libpolymorph.a $(LDLIBS)

test: all
	BUILD=$(BUILD) SAN=$(SAN) PYTHON=$(PYTHON) sh tests/run_all.sh

# Fuzz targets (clang libFuzzer): `make fuzz` builds them into build-fuzz/.
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" build-fuzz/libpolymorph.a
	@mkdir -p build-fuzz/fuzz
	for f in $(FUZZ_SRCS); do \
	  clang -std=c11 -g -O1 -Iinclude -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o build-fuzz/fuzz/$$(basename $$f .c) $$f build-fuzz/libpolymorph.a -lm -lpthread || exit 1; \
	done

# `make run`: build the CLI, fetch the default model once (tools/fetch_model.sh
# prints its path) and ask it a question on the default preset; `make model`
# only fetches. The answer streams, then the figures table (docs/models.md).
RUN_PROMPT ?= What is the capital of France?
run: $(BUILD)/polymorph
	@model=$$(sh tools/fetch_model.sh) && \
	$(BUILD)/polymorph run --model "$$model" --chat --prompt "$(RUN_PROMPT)"

model:
	@sh tools/fetch_model.sh

clean:
	rm -rf build build-san build-fuzz
