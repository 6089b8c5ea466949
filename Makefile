# shoal — build, run and test. `make help` lists the targets.

GO        ?= go
BIN       := bin/shoal
DATA      ?= ./data
NODES     ?= 3
# Ports of node 1 of a new cluster in $(DATA); node i uses base+i-1.
HTTP_BASE ?= 8081
RAFT_BASE ?= 9081
# Integration tests start real node processes of this binary.
export SHOAL_BIN := $(CURDIR)/$(BIN)
# How long `make fuzz-short` runs each fuzz target: a count of executions
# ("5000x") or a duration ("30s"). `make test` uses a count because Go 1.26
# can fail a duration-bounded run with a bare "context deadline exceeded"
# when the deadline races a busy worker (go.dev/issue/75804, fixed in 1.27);
# a count has no deadline to race.
FUZZTIME  ?= 5000x
# How long `make chaos` runs.
CHAOS_DURATION ?= 5m
# With redis-server installed, `make chaos` runs reads through the hot tier.
CHAOS_FLAGS ?= $(if $(shell command -v redis-server),--redis,)

# `make run` passes --nodes, --http-base and --raft-base only when they
# are given (make run NODES=5): a directory that already holds a cluster
# keeps its own, and `cluster up` refuses flags that disagree with them.
UP_FLAGS = $(if $(filter-out file,$(origin NODES)),--nodes $(NODES)) \
	$(if $(filter-out file,$(origin HTTP_BASE)),--http-base $(HTTP_BASE)) \
	$(if $(filter-out file,$(origin RAFT_BASE)),--raft-base $(RAFT_BASE))

.PHONY: help build run test test-short lint bench fuzz fuzz-short chaos clean

# help shows each target's comment with the variables in it replaced by
# their values: "$$(NODES) nodes" reads "3 nodes".
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  NODES='$(NODES)' DATA='$(DATA)' HTTP_BASE='$(HTTP_BASE)' RAFT_BASE='$(RAFT_BASE)' \
	  FUZZTIME='$(FUZZTIME)' CHAOS_DURATION='$(CHAOS_DURATION)' \
	  awk -F':.*## ' '{ text = $$2; \
	    while (match(text, /\$$\([A-Z_]+\)/)) { \
	      name = substr(text, RSTART + 2, RLENGTH - 3); \
	      text = substr(text, 1, RSTART - 1) ENVIRON[name] substr(text, RSTART + RLENGTH) } \
	    printf "  make %-11s %s\n", $$1, text }'

build: ## build bin/shoal
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/shoal

run: build ## start a local cluster of $(NODES) nodes in $(DATA), HTTP from port $(HTTP_BASE), Raft from $(RAFT_BASE) (Ctrl-C stops it)
	./$(BIN) cluster up --dir $(DATA) $(UP_FLAGS)

test: build ## run every test, integration tests with real node processes included
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz-short FUZZTIME=3000x

test-short: ## unit tests only, no node processes
	$(GO) test -short ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: build ## Go benchmarks of the storage, OT and comment indexes
	$(GO) test -run '^$$' -bench . -benchtime 2s ./storage/ ./fsm/...

# Every func FuzzXxx in a _test.go file is a target; `go test ./...` runs
# their seed corpora (testdata/fuzz) as plain tests already.
fuzz-short: ## run every fuzz target for $(FUZZTIME) (executions or time)
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  pkg=$$(dirname $$file); \
	  for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
	    echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

fuzz: FUZZTIME = 2m
fuzz: fuzz-short ## run every fuzz target for 2 minutes

chaos: build ## long chaos run: $(CHAOS_DURATION) of kills, pauses and partitions, checked
	./$(BIN) chaos --duration $(CHAOS_DURATION) $(CHAOS_FLAGS)

clean: ## remove the binary (not the cluster data in $(DATA))
	rm -rf bin
