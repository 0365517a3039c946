# edgegate build, test and benchmark entry points. `make help` lists them.
GO        ?= go
BIN       ?= bin
PKGS      := ./...
# The test command CI runs (README): race detector on, every package.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build test lint proto bench demo fuzz clean help

all: lint test build

help:
	@echo "build  - build edgegate and edgesim into $(BIN)/"
	@echo "test   - unit, end-to-end and interop tests with the race detector"
	@echo "lint   - gofmt, go vet, staticcheck"
	@echo "proto  - regenerate proto/edgegate/v1 from gateway.proto (needs protoc)"
	@echo "bench  - throughput, latency and memory against mosquitto; prints a table"
	@echo "demo   - the gateway on its embedded default, simulated devices, the live stream"
	@echo "fuzz   - run every fuzz target for FUZZTIME (default 30s each)"

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The README's test command: lint, then every test with the race detector.
test: lint
	$(GO) test $(TESTFLAGS) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

proto:
	PATH="$$(dirname $$($(GO) tool -n protoc-gen-go)):$$(dirname $$($(GO) tool -n protoc-gen-go-grpc)):$$PATH" \
	protoc -I proto -I /usr/include \
	  --go_out=paths=source_relative:proto \
	  --go-grpc_out=paths=source_relative:proto \
	  proto/edgegate/v1/gateway.proto

bench: build
	$(GO) run ./cmd/edgebench $(BENCHFLAGS)

demo: build
	./scripts/demo.sh

FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN)
