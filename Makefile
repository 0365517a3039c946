# edgegate build, test and benchmark entry points. `make help` lists them.
GO        ?= go
BIN       ?= bin
PKGS      := ./...
# The test command CI runs (README): race detector on, every package.
TESTFLAGS ?= -race -count=1 -timeout 20m
# The nested module examples/ (Kubernetes manifests, Helm chart): static checks,
# nothing concurrent, so no race detector; see docs/kubernetes.md.
EXAMPLESTESTFLAGS ?= -count=1 -timeout 10m
# The version stamp `edgegate --version` prints (gateway.Version, gateway.Commit).
VERSION   ?= $(shell git describe --tags --match 'v*' 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/edgegate/edgegate/gateway.Version=$(VERSION) -X github.com/edgegate/edgegate/gateway.Commit=$(COMMIT)
# make image: the container image (Dockerfile); needs a Docker engine with BuildKit.
DOCKER    ?= docker
IMAGE     ?= ghcr.io/edgegate/edgegate:$(VERSION)

.PHONY: all build test lint proto clients bench demo demo-kitchen fuzz clean help image manifests-check functions-example

all: lint test build

help:
	@echo "build  - build edgegate, edgesim and edgebench into $(BIN)/"
	@echo "test   - unit, end-to-end and interop tests with the race detector"
	@echo "lint   - gofmt, go vet, staticcheck"
	@echo "proto  - regenerate proto/edgegate/v1 (gateway.proto) and protocols/sparkplug/sparkplugpb (sparkplug_b.proto); needs protoc"
	@echo "clients - regenerate the TypeScript and Python stubs in clients/ (needs protoc, npm)"
	@echo "bench  - throughput, latency and memory against mosquitto, memory and data_dir; prints a table (BENCHFLAGS='--only durable' for the durable shapes)"
	@echo "demo   - the gateway (examples/demo/edgegate.yaml), simulated MQTT, CoAP, Modbus and OPC UA devices, the live stream"
	@echo "demo-kitchen - the kitchen display example: Modbus fryers, MQTT orders, the Go client"
	@echo "fuzz   - run every fuzz target for FUZZTIME (default 30s each)"
	@echo "image  - the container image IMAGE (default $(IMAGE)) with docker build"
	@echo "manifests-check - Kubernetes manifests and the rendered Helm chart, decoded strictly and cross-checked"
	@echo "functions-example - the example edge function in WebAssembly, $(BIN)/anomaly.wasm (docs/functions.md)"

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# The README's test command: lint, then every test with the race detector.
test: lint
	$(GO) test $(TESTFLAGS) $(PKGS)
	cd examples && $(GO) test $(EXAMPLESTESTFLAGS) ./...

# Every manifest under examples/kubernetes and the Helm chart (default values and
# each ci/*-values.yaml) decoded strictly into the Kubernetes API types and
# cross-checked against the edgegate config each pod mounts. No cluster needed.
manifests-check:
	cd examples && $(GO) test $(EXAMPLESTESTFLAGS) ./...

# The example edge function (examples/functions/anomaly) as a WASI reactor module;
# make bench measures it, and a config runs it with wasm: {module: bin/anomaly.wasm}.
functions-example:
	@mkdir -p $(BIN)
	cd examples && GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(abspath $(BIN))/anomaly.wasm ./functions/anomaly

# A static, non-root image on distroless, the version stamped in. docker build needs
# a Docker engine (BuildKit); podman build works the same with DOCKER=podman.
image:
	$(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	cd examples && $(GO) vet ./... && $$(cd .. && $(GO) tool -n staticcheck) ./...

proto:
	PATH="$$(dirname $$($(GO) tool -n protoc-gen-go)):$$(dirname $$($(GO) tool -n protoc-gen-go-grpc)):$$PATH" \
	protoc -I proto -I /usr/include \
	  --go_out=paths=source_relative:proto \
	  --go-grpc_out=paths=source_relative:proto \
	  proto/edgegate/v1/gateway.proto
	PATH="$$(dirname $$($(GO) tool -n protoc-gen-go)):$$PATH" \
	protoc -I protocols/sparkplug/sparkplugpb \
	  --go_out=paths=source_relative:protocols/sparkplug/sparkplugpb \
	  protocols/sparkplug/sparkplugpb/sparkplug_b.proto

# Stubs for other languages, from the same gateway.proto (committed, like the Go
# code): TypeScript with @bufbuild/protoc-gen-es (npm, pinned in clients/), Python
# with protoc's own --python_out and Debian's grpc_python_plugin (protobuf-compiler-grpc).
clients: clients/node_modules
	rm -rf clients/ts/gen clients/python/edgegate
	mkdir -p clients/ts/gen clients/python
	protoc -I proto -I /usr/include \
	  --plugin=protoc-gen-es=clients/node_modules/.bin/protoc-gen-es \
	  --es_out=clients/ts/gen --es_opt=target=ts,import_extension=js \
	  --python_out=clients/python --pyi_out=clients/python \
	  --plugin=protoc-gen-grpc_python=$$(command -v grpc_python_plugin) --grpc_python_out=clients/python \
	  proto/edgegate/v1/gateway.proto

clients/node_modules: clients/package.json clients/package-lock.json
	cd clients && npm ci --no-audit --no-fund
	@touch $@

bench: build
	$(GO) run ./cmd/edgebench $(BENCHFLAGS)

# The embedded default plus a Modbus and an OPC UA device (examples/demo/edgegate.yaml),
# with edgesim simulating devices of all four protocols; Ctrl-C stops everything.
demo: build
	./scripts/demo.sh

# The kitchen display example (examples/kitchen-display): Modbus fryers from edgesim,
# point-of-sale terminals over MQTT, the display through the Go client library.
demo-kitchen: build
	cd examples && $(GO) build -trimpath -o ../$(BIN)/kitchen-display ./kitchen-display
	./examples/kitchen-display/demo.sh

FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN)
