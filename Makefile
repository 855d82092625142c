# modelseal: build, test, fuzz and benchmark.
GO       ?= go
FUZZTIME ?= 15s
PKGS     := ./...

.PHONY: all build deps test vet fuzz bench fixtures clean

# System packages the tests use: Debian's docker-registry (a real OCI
# registry process) and libonnx-testdata (1,000+ real ONNX models).
DEBS := docker-registry libonnx-testdata

all: build test

build:
	$(GO) build -o bin/modelseal ./cmd/modelseal

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet $(PKGS)

# Install the system packages the tests need, when they are missing.
deps:
	@if command -v docker-registry >/dev/null 2>&1 && [ -d /usr/share/libonnx-testdata/data ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "make deps: install $(DEBS) (Debian packages)"; exit 1; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "make deps: installing $(DEBS)"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null

# The test command of the README: system packages, vet, then every test
# (fuzz seeds included).
test: deps vet
	$(GO) test -count=1 -timeout 15m $(PKGS)

# Run every fuzz target briefly (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

# Benchmarks: generate large inputs (never committed) and report medians and
# ratios against baselines measured in the same run. See README "Benchmarks".
bench:
	$(GO) run ./cmd/modelseal-bench $(BENCHFLAGS)

# Regenerate the committed fixtures with Debian's python3-torch, -numpy,
# -sklearn and -joblib (see fixtures/README.md).
fixtures:
	cd fixtures && /usr/bin/python3 make_fixtures.py

clean:
	rm -rf bin
