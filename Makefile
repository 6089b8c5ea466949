# shoal — build, run and test. `make help` lists the targets.

GO        ?= go
BIN       := bin/shoal
DATA      ?= ./data
NODES     ?= 3
# Integration tests start real node processes of this binary.
export SHOAL_BIN := $(CURDIR)/$(BIN)

.PHONY: help build run test test-short lint bench fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/shoal
	$(GO) build -o $(BIN) ./cmd/shoal

run: build ## start a local cluster of $(NODES) nodes in $(DATA) (Ctrl-C stops it)
	./$(BIN) cluster up --nodes $(NODES) --dir $(DATA)

test: build ## run every test, integration tests with real node processes included
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...

test-short: ## unit tests only, no node processes
	$(GO) test -short ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: build ## Go benchmarks of the storage, OT and comment indexes
	$(GO) test -run '^$$' -bench . -benchtime 2s ./storage/ ./fsm/...

clean: ## remove the binary (not the cluster data in $(DATA))
	rm -rf bin
