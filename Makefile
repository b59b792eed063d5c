# Switchboard. `make up` runs the local target; `make test` runs the whole suite.
SHELL := /bin/bash
export GOPROXY ?= https://proxy.golang.org
export GOFLAGS ?= -mod=mod
BIN := bin
GO_PKGS := ./...

.PHONY: build up test lint bench bench-scenarios bench-cluster deps token fuzz tools kind-up generate chaos e2e docs suite-cluster schema plugin

build:
	go build -trimpath -o $(BIN)/ ./app/cmd/...

# The switchboard Pulumi plugin, where examples/yaml's plugins.providers path
# finds it. Apart from build: it compiles Pulumi's code generators (minutes
# on a cold cache), which make up does not need.
plugin:
	go build -trimpath -o $(BIN)/ ./provider/cmd/...

# Installs the Debian packages the local target and the tests run (only what is missing).
deps:
	@./scripts/deps.sh

up: deps build
	$(BIN)/switchboard-local

# The behaviour suite on the local target with a Redis Cluster (3 primaries, a replica each);
# RUN picks other tests of tests/ to run the same way.
RUN ?= ^TestBehaviour$$
suite-cluster: deps
	SWITCHBOARD_REDIS=cluster go test -count=1 -v -timeout 40m -run '$(RUN)' ./tests/

token: build
	@JWT_SECRET=$${JWT_SECRET:-switchboard-development-secret-not-for-production} $(BIN)/chatserver token -user $${USER_NAME:-$(or $(USER),alice)}

# The control plane (etcd, kube-apiserver, controller manager, scheduler, kwok)
# that infra/'s tests apply the stack to; built once into ~/.cache/switchboard.
tools:
	@./scripts/tools.sh >/dev/null

# Regenerates dashboards/switchboard.json and grafana-alerting.yaml.
generate:
	go generate ./dashboards

# provider/schema.json from the types the provider serves (infer derives it);
# TestSchemaIsTheProvidersOwn fails until it is rerun after they change.
schema:
	go test -count=1 -run '^TestSchemaIsTheProvidersOwn$$' ./provider -update-schema

# The front page's pictures: the topology SVGs from their Graphviz sources
# (infra/pictures_test.go checks that the sources name what the stacks
# deploy), and docs/img/chat.png, a screenshot of the chat page after a
# conversation between two headless Chromium pages on the local target
# (tests/browser_test.go); then docs/img/front-page.png, the README's
# pictures as headless Chromium shows them (tests/frontpage_test.go). Each
# run writes the same files again.
docs: deps
	for f in docs/img/*.dot; do dot -Tsvg -o "$${f%.dot}.svg" "$$f" || exit 1; done
	SWITCHBOARD_SCREENSHOT=$(CURDIR)/docs/img/chat.png go test -count=1 -run '^TestBehaviour$$/^ChatPageInTwoBrowsers$$' ./tests
	SWITCHBOARD_SCREENSHOT=$(CURDIR)/docs/img/front-page.png go test -count=1 -run '^TestFrontPagePicturesRenderInChromium$$' ./tests

# A kind cluster for the dev stack, with the chat server's image loaded into it.
# Needs kind and a Docker engine.
kind-up:
	kind get clusters | grep -qx switchboard || kind create cluster --config infra/kind/cluster.yaml
	docker build -t switchboard/chatserver:dev .
	kind load docker-image switchboard/chatserver:dev --name switchboard

# gofmt, go vet, and actionlint on every GitHub Actions workflow.
lint:
	@test -z "$$(gofmt -l app blueprint provider examples infra tests dashboards nginx 2>/dev/null)" || { gofmt -l app blueprint provider examples infra tests dashboards nginx; echo "gofmt: files above need formatting"; exit 1; }
	go vet $(GO_PKGS)
	@./scripts/actionlint.sh

# Budgets are execution counts (10-20 s each here), not durations: when a
# duration runs out, Go 1.26's fuzz coordinator can report its own deadline
# as a failure ("context deadline exceeded", golang/go#75804, fixed in 1.27).
FUZZ = go test ./app/protocol -run '^$$' -fuzzminimizetime 10000x -fuzz
fuzz:
	$(FUZZ) '^FuzzDecodeClient$$' -fuzztime 400000x
	$(FUZZ) '^FuzzAppendQuoteIsWhatTheEncoderWrites$$' -fuzztime 500000x
	$(FUZZ) '^FuzzPlainAgreesWithTheDecoder$$' -fuzztime 500000x

# The behaviour suite runs verbose so that each scenario prints its figures;
# it includes a minute of the chaos test (TestChaos) with seed 1, then both
# again on a Redis Cluster (issue 29: the cluster form is a guarantee too).
# The race detector runs on the packages whose code runs concurrently (app/
# and the rest of the product). infra/ and tests/ drive processes, Pulumi's
# mocks and kubectl from the outside; built without it they reuse what lint
# compiled, which saves minutes on a cold machine.
test: deps lint tools
	go test -race -count=1 -timeout 20m ./app/... ./nginx/... ./dashboards/... ./docs/...
	go test -count=1 -timeout 20m -v ./infra/... ./blueprint/... ./provider/... ./examples/...
	go test -count=1 -timeout 25m -v ./tests/...
	$(MAKE) suite-cluster RUN='^Test(Behaviour|Chaos)$$'
	$(MAKE) fuzz

# The chaos test, with a seed and a duration: make chaos SEED=1 DURATION=1m, or several
# seeds one after another: make chaos SEEDS="1 2 3 4 5" DURATION=1m (the first failing
# seed stops it). Each run stops by itself after DURATION, the round of faults under way
# (each kind must take effect once, about a minute), and the time to converge and drain.
SEED ?= 1
SEEDS ?= $(SEED)
DURATION ?= 10m
chaos: deps
	@for seed in $(SEEDS); do \
		echo "chaos: seed $$seed, $(DURATION)"; \
		SWITCHBOARD_CHAOS_SEED=$$seed SWITCHBOARD_CHAOS_DURATION=$(DURATION) go test -count=1 -v -timeout 0 -run '^TestChaos$$' ./tests || exit 1; \
	done

# The pinned comparison of issue 30 (tests/pinned_test.go): one Switchboard
# instance and one Centrifugo node, each measured alone on CPU 1, the load
# tool and the datastores on CPU 0; on two shapes, the table's rate in 3
# rounds interleaved between the two (SWITCHBOARD_BENCH_ROUNDS), the floor
# (tests/floor) at that rate once, then a sweep of fixed rates. It rewrites
# docs/performance.md's current table and docs/img/p99-vs-rate.svg, and
# adds the run to docs/log.md. About 16 minutes.
bench: deps build
	SWITCHBOARD_BENCH=1 SWITCHBOARD_BENCH_DOCS=$(CURDIR)/docs go test -count=1 -timeout 30m -v -run '^TestPinnedComparison$$' ./tests

# The Go micro-benchmarks, then the load scenarios on the local target
# (tests/bench_test.go): through NGINX to 3 instances, straight to one
# instance (TestDirectScenarios), and the same direct scenarios against
# Centrifugo (TestCentrifugoScenarios; built once into ~/.cache/switchboard).
# Each scenario prints one line. Most of an hour of full load on every core.
bench-scenarios: deps build
	go test -run '^$$' -bench . -benchmem ./app/...
	SWITCHBOARD_BENCH=1 go test -count=1 -timeout 100m -v -run '^Test(Direct|Load|Centrifugo)Scenarios$$' ./tests

# Redis Cluster's cost and capacity (issue 29, docs/performance.md): one
# shard's primary driven through the broker, Postgres's inserts, then Redis
# CPU per send of one instance on one Redis and on a 3-shard cluster.
# About 10 minutes.
bench-cluster: deps build
	go test -count=1 -run '^$$' -bench '^BenchmarkClusterShard$$' -benchtime 100000x ./app/broker
	go test -count=1 -run '^$$' -bench '^BenchmarkInsert$$' -benchtime 400x ./app/store
	SWITCHBOARD_BENCH=1 go test -count=1 -timeout 30m -v -run '^TestRedisClusterCPUPerSend$$' ./tests

# The dev stack on a real kind cluster built here (no registry, no internet
# but the Go proxy and Debian's mirror): node image, component and app
# images, the pulumi CLI and Kubernetes provider, then TestDevStackOnKind.
# Cached under ~/.cache/switchboard/e2e; see scripts/e2e.sh and docs/e2e.md.
e2e:
	@./scripts/e2e.sh
