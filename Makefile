# outboxkit — the targets CI and developers run. `make help` lists them.
SHELL := /bin/bash
# Every module of the workspace, in go.work order.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
SKIPLOG := $(CURDIR)/.test-skips.log
SUMMARY := $(CURDIR)/.conformance-summary.md
# -count=1: a cached result would not re-log its skips nor rewrite the conformance summary.
# -timeout 20m: the conformance package runs every cell in one test binary (7.6 min on a quiet
# 2-core machine); go test's default of 10 min killed it once when the machine was busy.
GO_TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: help test test-race test-race-cells fuzz lint verify generate bench bench-backlog demo build matrix modproxy tidy deps install-check

# Releases (docs/releasing.md): the modules require each other at RELEASE_VERSION; go.work wires the
# workspace for development. Outside the workspace (GOWORK=off builds, tidy, install-check) the siblings
# come from a local module proxy serving the working tree at RELEASE_VERSION (cmd/internal/modproxy).
RELEASE_VERSION ?= v0.2.0
MODULE_PREFIX := github.com/outboxkit/outboxkit
# Outside the checkout (a module cache holds third-party go.mod files, some with replace directives),
# one directory per checkout: the proxy serves that checkout's tree.
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/outboxkit-release/$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-16)
MODPROXY := $(CACHE)/bin/modproxy
MODPROXY_DIR := $(CACHE)/modproxy
# GOFLAGS of `go env` (a go env -w setting) would be shadowed by the variable: keep it.
GOFLAGS_BASE := $(shell go env GOFLAGS)
REAL_GOPROXY := $(shell go env GOPROXY)
# The module cache's download directory is a valid GOPROXY: third-party modules come from it when present.
MODPROXY_ENV = GOWORK=off GOPROXY=file://$(MODPROXY_DIR),file://$(shell go env GOMODCACHE)/cache/download,$(REAL_GOPROXY) \
	GOMODCACHE=$(CACHE)/gomodcache MODPROXY_CACHE=$(CACHE)/gomodcache GONOSUMDB=$(MODULE_PREFIX) GOFLAGS="$(GOFLAGS_BASE) -modcacherw -trimpath"
# Count budgets, not durations: go1.26's fuzz coordinator can fail a target with a bare
# "context deadline exceeded" when a -fuzztime duration expires mid-exec (go.dev/issue/75804,
# fixed in Go 1.27). Minimization is bounded so one new input cannot eat the whole budget.
FUZZTIME ?= 50000x
FUZZMINIMIZE ?= 100x
# make bench-backlog's two backlog sizes.
BACKLOG_EVENTS ?= 100000
BACKLOG_LARGE_EVENTS ?= 1000000
# Each input of the relay fuzz target waits for a real relay (a few ms): a smaller budget (~5 s).
FUZZRELAYTIME ?= 300x

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: modproxy ## build every module, also alone (GOWORK=off, siblings from the local module proxy)
	@set -e; for m in $(MODULES); do echo "== build $${m#$(CURDIR)/}"; (cd $$m && go build ./...); \
	  $(MODPROXY_ENV) bash cmd/internal/modproxy/offline.sh build $$m; done

modproxy: ## write the local module proxy: every module of go.work at RELEASE_VERSION, zipped from the working tree
	@go build -o $(MODPROXY) ./cmd/internal/modproxy
	@$(MODPROXY) build -root . -version $(RELEASE_VERSION) -out $(MODPROXY_DIR)

deps: ## one version of every dependency across the modules, siblings at RELEASE_VERSION, no replace
	@go build -o $(MODPROXY) ./cmd/internal/modproxy
	@$(MODPROXY) deps -root .

install-check: modproxy ## go install the CLIs at RELEASE_VERSION from the local module proxy in a fresh GOPATH, then replay docs/getting-started.md and docs/codegen.md in a scratch module
	@MODPROXY=$(MODPROXY) MODPROXY_DIR=$(MODPROXY_DIR) RELEASE_VERSION=$(RELEASE_VERSION) MODULE_PREFIX=$(MODULE_PREFIX) \
	  REAL_GOPROXY=$(REAL_GOPROXY) GOFLAGS_BASE="$(GOFLAGS_BASE)" SKIPLOG=$(INSTALL_CHECK_SKIPLOG) bash cmd/internal/modproxy/install-check.sh

tidy: ## go mod tidy every module against the local module proxy (go.sum keeps no outboxkit line; rerun until stable)
	@set -e; for round in 1 2 3; do before=$$(cat $$(git ls-files --cached --others --exclude-standard "*go.mod" "*go.sum") | sha256sum); \
	  $(MAKE) --no-print-directory modproxy; $(MODPROXY_ENV) bash cmd/internal/modproxy/offline.sh tidy $(MODULES); \
	  [ "$$before" = "$$(cat $$(git ls-files --cached --others --exclude-standard "*go.mod" "*go.sum") | sha256sum)" ] && exit 0; done; \
	echo "tidy: go.mod files still changing after 3 rounds"; exit 1

test: ## run every module's tests; cells whose service is down are skipped (OUTBOX_TEST_REQUIRE=all fails instead) and summarized
	@rm -f $(SKIPLOG) $(SUMMARY); status=0; \
	for m in $(MODULES); do echo "== test $${m#$(CURDIR)/}"; \
	  (cd $$m && OUTBOX_TEST_SKIPLOG=$(SKIPLOG) OUTBOX_CONFORMANCE_SUMMARY=$(SUMMARY) go test $(GO_TEST_FLAGS) ./...) || status=1; done; \
	$(MAKE) --no-print-directory fuzz || status=1; \
	$(MAKE) --no-print-directory install-check INSTALL_CHECK_SKIPLOG=$(SKIPLOG) || status=1; \
	if [ -n "$$OUTBOX_TEST_RACE" ]; then echo "== test-race-cells (OUTBOX_TEST_RACE is set)"; $(MAKE) --no-print-directory test-race-cells || status=1; fi; \
	if [ -s $(SUMMARY) ]; then echo; echo "== conformance matrix (make matrix copies it into README.md)"; cat $(SUMMARY); fi; \
	if [ -s $(SKIPLOG) ]; then echo; echo "== skipped (service unreachable; set OUTBOX_TEST_REQUIRE=all to fail instead):"; \
	  sort -u $(SKIPLOG) | awk -F'\t' '{ pkg = ($$3 == "" ? "?" : $$3); sub("^$(MODULE_PREFIX)/", "", pkg); \
	      n[$$2]++; if (!((pkg, $$2) in seen)) { seen[pkg, $$2] = 1; pk[$$2] = pk[$$2] (pk[$$2] == "" ? "" : ", ") pkg } \
	      if (n[$$2] <= 3) ex[$$2] = ex[$$2] (n[$$2] > 1 ? ", " : "") pkg "." $$1 } \
	    END { for (r in n) printf "  %s: %d test(s) in %s; e.g. %s%s\n", r, n[r], pk[r], ex[r], (n[r] > 3 ? ", ..." : "") }'; \
	  echo "  (full list, test<TAB>reason<TAB>package: $(SKIPLOG))"; else echo; echo "== no test skipped for a missing service"; fi; \
	exit $$status

fuzz: ## fuzz outboxgen's schema parser and the generated decoder (FUZZTIME executions each, default 50000x) and a relay over hostile SQLite rows (FUZZRELAYTIME, 300x)
	@echo "== fuzz (FUZZTIME=$(FUZZTIME) each)"
	@cd cmd/outboxgen && go test -run '^$$' -fuzz '^FuzzParseSchema$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	@cd cmd/outboxgen/examples/invoicing && go test -run '^$$' -fuzz '^FuzzDecoderHandle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	@cd drivers/sqlite && go test -run '^$$' -fuzz '^FuzzRelayOverHostileRow$$' -fuzztime $(FUZZRELAYTIME) -fuzzminimizetime $(FUZZMINIMIZE) .

test-race: ## run every module's tests with the race detector
	@$(MAKE) --no-print-directory test GO_TEST_FLAGS="-race $(GO_TEST_FLAGS)"

# The cells test-race-cells runs: each database on the reference broker, at the suite's short counts
# (-short): the race detector looks for data races, not for load, and instrumented code is many times
# slower, modernc's SQLite (C translated to Go) most of all: at full counts sqlite_nats's SIGKILL test,
# whose last relay must drain 20000 events over 64 keys in 3 minutes, did not finish in time (each claim
# scans the rows of the keys other batches hold).
RACE_CELLS ?= TestMatrix/(postgres_nats|mysql_nats|sqlite_nats)/

test-race-cells: ## the race detector on the core, drivers/sqlite and the conformance cells RACE_CELLS, a CI-sized subset of test-race
	@set -e; cd framework && go test -race $(GO_TEST_FLAGS) ./...; \
	cd ../drivers/sqlite && go test -race $(GO_TEST_FLAGS) ./...; \
	cd ../../conformance && go test -race -short $(GO_TEST_FLAGS) -run '$(RACE_CELLS)' .

lint: ## gofmt, go vet, and staticcheck when installed
	@set -e; out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; \
	for m in $(MODULES); do (cd $$m && go vet ./...); done; \
	if command -v staticcheck >/dev/null; then for m in $(MODULES); do (cd $$m && staticcheck ./...); done; \
	else echo "staticcheck not installed: skipped"; fi

generate: ## run go generate in every module
	@set -e; for m in $(MODULES); do (cd $$m && go generate ./...); done

verify: lint deps build ## generated code fresh, go.mod tidy, one version per dependency, gofmt/vet clean, every module builds with GOWORK=off
	@set -e; $(MAKE) --no-print-directory generate; \
	$(MODPROXY_ENV) bash cmd/internal/modproxy/offline.sh tidy-check $(MODULES); \
	if [ -n "$$(git status --porcelain -- .)" ]; then echo "verify: generated code not up to date (or new files not committed):"; git status --short; exit 1; fi

# make bench takes about 45 minutes on the shared 2-core machine under load (load average ~20): the
# PostgreSQL half of the 100k comparison took 15 min there (3 reps of ~5 min, Watermill's forwarder
# ~2 min of each), MariaDB about as long, the per-broker runs about 10, poison 1, the Go benchmarks
# the rest. Expect about half on a quiet machine.
BENCH_BROKERS ?= nats://127.0.0.1:4222 kfake:// amqp://guest:guest@127.0.0.1:5672/ redis://127.0.0.1:6379/0
bench: ## outbox bench with default relay settings: PostgreSQL and MariaDB -> NATS at 100k (medians of 3 interleaved reps vs the minimal relay, the Watermill forwarder and raw async publish), each broker vs its raw publish, the poison scenario, then the Go benchmarks (~45 min)
	cd cmd/outbox && go run . bench --matrix --compare --events 100000
	@set -e; for b in $(BENCH_BROKERS); do (cd cmd/outbox && go run -tags kfake . bench --broker-url "$$b" --events 20000 --reps 3 --baselines raw --idle 0 --duration 2s); done
	cd cmd/outbox && go run . bench --poison 3 --reps 3
	@set -e; for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchmem ./...); done

bench-backlog: ## backlog scale: 1M-event drain rate / 100k-event drain rate, PostgreSQL -> NATS, default relay settings, 3 interleaved reps, on a scratch PostgreSQL cluster with the server's default settings (~30 min or more: 3 x 1.1M events seeded and drained; not part of make bench)
	cd cmd/outbox && go build -o $(CACHE)/bin/outbox-bench . && bash internal/bench/scratch-postgres.sh \
	  sh -c '$(CACHE)/bin/outbox-bench bench --db-url "$$OUTBOX_SCRATCH_PG_URL" --events $(BACKLOG_EVENTS) --large-events $(BACKLOG_LARGE_EVENTS) --reps 3 --no-baselines --idle 0 --duration 1s'

matrix: ## rewrite README.md's support matrix from the conformance suite's own summary (runs the suite unless make test left one)
	@cd conformance && if [ -s $(SUMMARY) ]; then go run ./cmd/matrix -readme ../README.md -summary $(SUMMARY); \
	else go run ./cmd/matrix -readme ../README.md; fi

demo: ## the outbox end to end on an embedded SQLite + embedded NATS (no service needed)
	go run ./examples/quickstart
