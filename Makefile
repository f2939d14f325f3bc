# coffer — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/coffer

.PHONY: all build demo test test-unit test-e2e fuzz bench deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/coffer

# The main job end to end on an embedded default data set.
demo:
	scripts/demo

# Everything CI runs: vet, gofmt, unit and fuzz-seed tests, the race
# detector on the engine, the cache, the mount, the pipeline and s3io, and
# the end-to-end tests against the built binary (scripts/test says how
# they share the machine).
test: deps
	GO=$(GO) scripts/test

deps:
	scripts/deps

# A short fuzzing pass over every decoder.
fuzz:
	@for f in $$($(GO) test ./engine -list '^Fuzz' | grep ^Fuzz); do \
		echo "== $$f"; $(GO) test ./engine -run '^$$' -fuzz "^$$f$$" -fuzztime 20s || exit 1; done

# Whole-process comparison against restic (see docs/PERFORMANCE.md).
bench:
	scripts/bench

clean:
	rm -rf bin
