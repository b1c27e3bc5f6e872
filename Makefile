# outboxkit — the targets CI and developers run. `make help` lists them.
SHELL := /bin/bash
# Every module of the workspace, in go.work order.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
SKIPLOG := $(CURDIR)/.test-skips.log
SUMMARY := $(CURDIR)/.conformance-summary.md
# -count=1: a cached result would not re-log its skips nor rewrite the conformance summary.
GO_TEST_FLAGS ?= -count=1

.PHONY: help test test-race test-race-cells fuzz lint verify generate bench demo build matrix
# Count budgets, not durations: go1.26's fuzz coordinator can fail a target with a bare
# "context deadline exceeded" when a -fuzztime duration expires mid-exec (go.dev/issue/75804,
# fixed in Go 1.27). Minimization is bounded so one new input cannot eat the whole budget.
FUZZTIME ?= 50000x
FUZZMINIMIZE ?= 100x
# Each input of the relay fuzz target waits for a real relay (a few ms): a smaller budget (~5 s).
FUZZRELAYTIME ?= 300x

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build every module, also outside the workspace (GOWORK=off)
	@set -e; for m in $(MODULES); do echo "== build $${m#$(CURDIR)/}"; (cd $$m && go build ./... && GOWORK=off go build ./...); done

test: ## run every module's tests; cells whose service is down are skipped (OUTBOX_TEST_REQUIRE=all fails instead) and summarized
	@rm -f $(SKIPLOG) $(SUMMARY); status=0; \
	for m in $(MODULES); do echo "== test $${m#$(CURDIR)/}"; \
	  (cd $$m && OUTBOX_TEST_SKIPLOG=$(SKIPLOG) OUTBOX_CONFORMANCE_SUMMARY=$(SUMMARY) go test $(GO_TEST_FLAGS) ./...) || status=1; done; \
	$(MAKE) --no-print-directory fuzz || status=1; \
	if [ -s $(SUMMARY) ]; then echo; echo "== conformance matrix (make matrix copies it into README.md)"; cat $(SUMMARY); fi; \
	if [ -s $(SKIPLOG) ]; then echo; echo "== skipped cells (service unreachable; set OUTBOX_TEST_REQUIRE=all to fail instead):"; \
	  sort -u $(SKIPLOG) | awk -F'\t' '{ n[$$2]++; if (n[$$2] <= 4) ex[$$2] = ex[$$2] (n[$$2] > 1 ? ", " : "") $$1 } \
	    END { for (r in n) printf "  %s: %d test(s), e.g. %s%s\n", r, n[r], ex[r], (n[r] > 4 ? ", ..." : "") }'; \
	  echo "  (full list: $(SKIPLOG))"; else echo; echo "== no cell skipped"; fi; \
	exit $$status

fuzz: ## fuzz outboxgen's schema parser and the generated decoder (FUZZTIME executions each, default 50000x) and a relay over hostile SQLite rows (FUZZRELAYTIME, 300x)
	@echo "== fuzz (FUZZTIME=$(FUZZTIME) each)"
	@cd cmd/outboxgen && go test -run '^$$' -fuzz '^FuzzParseSchema$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	@cd cmd/outboxgen/examples/invoicing && go test -run '^$$' -fuzz '^FuzzDecoderHandle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	@cd drivers/sqlite && go test -run '^$$' -fuzz '^FuzzRelayOverHostileRow$$' -fuzztime $(FUZZRELAYTIME) -fuzzminimizetime $(FUZZMINIMIZE) .

test-race: ## run every module's tests with the race detector
	@$(MAKE) --no-print-directory test GO_TEST_FLAGS="-race $(GO_TEST_FLAGS)"

# The cells test-race-cells runs: one per database, on the reference broker.
RACE_CELLS ?= TestMatrix/(postgres_nats|mysql_nats|sqlite_nats)/

test-race-cells: ## the race detector on the core and on one conformance cell per database (RACE_CELLS), a CI-sized subset of test-race
	@set -e; cd framework && go test -race $(GO_TEST_FLAGS) ./...; \
	cd ../drivers/sqlite && go test -race $(GO_TEST_FLAGS) ./...; \
	cd ../../conformance && go test -race $(GO_TEST_FLAGS) -run '$(RACE_CELLS)' .

lint: ## gofmt, go vet, and staticcheck when installed
	@set -e; out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; \
	for m in $(MODULES); do (cd $$m && go vet ./...); done; \
	if command -v staticcheck >/dev/null; then for m in $(MODULES); do (cd $$m && staticcheck ./...); done; \
	else echo "staticcheck not installed: skipped"; fi

generate: ## run go generate in every module
	@set -e; for m in $(MODULES); do (cd $$m && go generate ./...); done

verify: lint build ## generated code fresh, go.mod tidy, gofmt/vet clean, every module builds with GOWORK=off
	@set -e; $(MAKE) --no-print-directory generate; \
	for m in $(MODULES); do (cd $$m && go mod tidy); done; \
	if [ -n "$$(git status --porcelain -- .)" ]; then echo "verify: generated code or go.mod/go.sum not up to date (or new files not committed):"; git status --short; exit 1; fi

bench: ## outbox bench on PostgreSQL and MariaDB x NATS: defaults, the direct publish path, then tuned (drain, latency, CPU, baselines measured in the same run), then the Go benchmarks
	cd cmd/outbox && go run . bench --matrix --events 50000 --relays 3
	cd cmd/outbox && go run . bench --matrix --events 50000 --relays 3 --relay-flag=--publish=direct
	cd cmd/outbox && go run . bench --matrix --events 100000 --relays 3 --batch-size 500 --relay-flag=--publish=direct --relay-flag=--concurrency=2
	cd cmd/outbox && go run . bench --events 100000 --relays 3 --batch-size 500 --relay-flag=--publish=direct --relay-flag=--concurrency=2 --relay-flag=--delete-delivered
	@set -e; for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchmem ./...); done

matrix: ## rewrite README.md's support matrix from the conformance suite's own summary (runs the suite unless make test left one)
	@cd conformance && if [ -s $(SUMMARY) ]; then go run ./cmd/matrix -readme ../README.md -summary $(SUMMARY); \
	else go run ./cmd/matrix -readme ../README.md; fi

demo: ## the outbox end to end on an embedded SQLite + embedded NATS (no service needed)
	go run ./examples/quickstart
