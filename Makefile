# modelseal: build, test, fuzz and benchmark.
GO       ?= go
FUZZTIME ?= 15s
PKGS     := ./...

.PHONY: all build test vet fuzz bench fixtures clean

all: build test

build:
	$(GO) build -o bin/modelseal ./cmd/modelseal

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet $(PKGS)

# The test command of the README: vet, then every test (fuzz seeds included).
test: vet
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
