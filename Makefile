# Switchboard. `make up` runs the local target; `make test` runs the whole suite.
SHELL := /bin/bash
export GOPROXY ?= https://proxy.golang.org
export GOFLAGS ?= -mod=mod
BIN := bin
GO_PKGS := ./...

.PHONY: build up test lint bench deps token fuzz

build:
	go build -trimpath -o $(BIN)/ ./app/cmd/...

# Installs the Debian packages the local target and the tests run (only what is missing).
deps:
	@./scripts/deps.sh

up: deps build
	$(BIN)/switchboard-local

token: build
	@JWT_SECRET=$${JWT_SECRET:-dev-secret} $(BIN)/chatserver token -user $${USER_NAME:-$(or $(USER),alice)}

lint:
	@test -z "$$(gofmt -l app infra tests dashboards nginx 2>/dev/null)" || { gofmt -l app infra tests dashboards nginx; echo "gofmt: files above need formatting"; exit 1; }
	go vet $(GO_PKGS)

fuzz:
	go test ./app/protocol -run '^$$' -fuzz FuzzDecodeClient -fuzztime 20s

# The behaviour suite runs verbose so that each scenario prints its figures.
test: deps lint
	go test -race -count=1 -timeout 20m ./app/... ./nginx/... ./dashboards/...
	go test -race -count=1 -timeout 20m -v ./tests/...
	$(MAKE) fuzz

bench:
	go test -run '^$$' -bench . -benchmem ./app/...
