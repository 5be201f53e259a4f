# Sluice — the two commands a newcomer needs are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CHDB_VERSION := 26.7.3-stable.1
# Downloads shared by every clone on this machine, keyed by version.
SLUICE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sluice
CHDB_DIR := $(SLUICE_CACHE)/chdb/$(CHDB_VERSION)
CHDB_LIB := $(CHDB_DIR)/package/libchdb.so
# Tools built from tools/go.mod (buf, protoc plugins, golangci-lint), per clone, ignored by git.
TOOLS_BIN := $(CURDIR)/.cache/bin
export PATH := $(TOOLS_BIN):$(PATH)
export SLUICE_CHDB_LIB ?= $(CHDB_LIB)

MODULES := api platform services/catalog services/scheduler services/executor services/opslog services/ingest cmd/sluiced cmd/sluice sdk/go deploy bench
PKGS := $(addprefix ./,$(addsuffix /...,$(MODULES)))
GO_TEST_FLAGS ?= -count=1 -timeout 30m
# SDKs: the TypeScript package's pinned tools (protoc-gen-es, tsc) come from its package-lock;
# Python runs on Debian's python3-grpcio and python3-protobuf (not a pyenv python).
SDK_TS := sdk/typescript
SDK_TS_DEPS := $(SDK_TS)/node_modules/.package-lock.json
PYTHON := /usr/bin/python3
# The API is checked for breaking changes against this commit (CI: the previous one), once that
# commit has the v1 API as published: the commit that brought errors.proto (idempotency, pages,
# error reasons) changed an API nobody used yet, and the one before it has nothing to guard.
BUF_BREAKING_REF ?= HEAD~1
# The release is the chart's appVersion: the image tag the chart installs by default.
VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' deploy/helm/sluice/Chart.yaml)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION_LDFLAGS := -X github.com/sluicehq/sluice/cmd/sluiced/app.Version=$(VERSION) -X github.com/sluicehq/sluice/cmd/sluiced/app.Commit=$(COMMIT)
IMAGE_REPO ?= ghcr.io/sluicehq/sluiced
HELM_VERSION := v3.22.0

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: dev
dev: build chdb ## run Sluice all-in-one (embedded NATS and ClickHouse) in the foreground; data in ./.sluice-data
	@echo "Sluice dev: the operator token is written to .sluice-data/token on first start, and bin/sluice"
	@echo "on this machine uses it without flags. In another terminal:"
	@echo "  bin/sluice status"
	@echo "  bin/sluice workspace create shop --use   # then: bin/sluice push <project folder>"
	@echo "Elsewhere: SLUICE_TOKEN=\$$(cat .sluice-data/token) or sluice auth (see docs/security.md)."
	./bin/sluiced -target=all -dev -clickhouse-embedded-lib=$(CHDB_LIB)

.PHONY: build
build: ## build bin/sluiced and bin/sluice
	go build -ldflags "$(VERSION_LDFLAGS)" -o bin/sluiced ./cmd/sluiced
	go build -o bin/sluice ./cmd/sluice

.PHONY: test
test: deps chdb build $(TOOLS_BIN)/helm ## run every test, the SDK suites included (installs what they start when root)
	SLUICED=$(CURDIR)/bin/sluiced go test $(GO_TEST_FLAGS) -skip '^TestClusterSurvivesNodeLoss$$' $(PKGS)
	$(MAKE) test-cluster
	$(MAKE) test-sdk-ts test-sdk-python

# The cluster test runs on its own with -v, so that its counts (rows, ticks, faults, jobs run
# again) are printed also when it passes.
.PHONY: test-cluster
test-cluster: deps chdb build ## TestClusterSurvivesNodeLoss: CLUSTER_ROUNDS rounds of NATS node loss, partitions, catalog and leader kills (default 1)
	cd cmd/sluiced && SLUICED=$(CURDIR)/bin/sluiced SLUICE_CLUSTER_ROUNDS=$${CLUSTER_ROUNDS:-1} \
		go test -count=1 -timeout $${CLUSTER_TIMEOUT:-30m} -run '^TestClusterSurvivesNodeLoss$$' -v .

.PHONY: test-sdk
test-sdk: deps chdb build ## the three SDK suites, each against a real sluiced
	SLUICED=$(CURDIR)/bin/sluiced go test $(GO_TEST_FLAGS) ./sdk/go/...
	$(MAKE) test-sdk-ts test-sdk-python

.PHONY: test-sdk-ts test-sdk-python
test-sdk-ts: build $(SDK_TS_DEPS)
	cd $(SDK_TS) && SLUICED=$(CURDIR)/bin/sluiced npm test
test-sdk-python: build
	cd sdk/python && SLUICED=$(CURDIR)/bin/sluiced $(PYTHON) -m pytest -q -p no:cacheprovider tests

.PHONY: test-short
test-short: chdb ## unit tests only
	go test -short $(GO_TEST_FLAGS) $(PKGS)

.PHONY: bench
bench: deps chdb ## run the benchmarks and print the scoreboard of the speed targets (BENCH=<regexp>: some); bench/results/
	./bench/run.sh

.PHONY: soak
soak: deps chdb build ## TestSoak with SOAK_FAULTS random faults (default 1000), then the cluster test with CLUSTER_ROUNDS rounds (default 20); every row checked
	cd cmd/sluiced && SLUICE_SOAK_FAULTS=$${SOAK_FAULTS:-1000} go test -count=1 -timeout 6h -run '^TestSoak$$' -v .
	CLUSTER_ROUNDS=$${CLUSTER_ROUNDS:-20} CLUSTER_TIMEOUT=6h $(MAKE) test-cluster

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 2m)
	./scripts/fuzz.sh $${FUZZTIME:-2m}

GENERATED := api $(SDK_TS)/src/gen sdk/python/sluice

.PHONY: generate
generate: tools $(SDK_TS_DEPS) ## regenerate api/ (Go) and the SDKs' generated code from proto/
	buf generate
	buf build proto --exclude-path proto/sluice/persistence --as-file-descriptor-set \
		-o api/descriptors/descriptors.binpb
	cd api && go mod tidy
	buf generate --template $(SDK_TS)/buf.gen.yaml
	rm -rf $(addprefix sdk/python/sluice/,catalog common executor ingest opslog scheduler)
	buf generate --template sdk/python/buf.gen.yaml
	buf build third_party/googleapis --path third_party/googleapis/google/rpc/status.proto \
		--path third_party/googleapis/google/rpc/error_details.proto --exclude-source-info \
		--as-file-descriptor-set -o sdk/python/sluice/_rpc_descriptors.binpb

$(SDK_TS_DEPS): $(SDK_TS)/package-lock.json
	cd $(SDK_TS) && npm ci --no-audit --no-fund

.PHONY: generate-check
generate-check: generate ## fail when generated code is not committed
	@git diff --exit-code -- $(GENERATED) || { echo "generated code is out of date: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "untracked generated files: run 'make generate' and commit"; exit 1; }

.PHONY: breaking
breaking: tools ## buf breaking: the API against the previous commit (BUF_BREAKING_REF)
	@git rev-parse -q --verify '$(BUF_BREAKING_REF)^{commit}' >/dev/null || \
		{ [ "$$(git rev-parse --is-shallow-repository)" = true ] && echo "buf breaking: shallow clone, fetching one more commit" && git fetch -q --deepen=1; } || true
	@git rev-parse -q --verify '$(BUF_BREAKING_REF)^{commit}' >/dev/null || { echo "buf breaking: no commit $(BUF_BREAKING_REF) to compare with (a shallow clone? fetch more history)"; exit 1; }
	@if git cat-file -e '$(BUF_BREAKING_REF):proto/sluice/common/v1/errors.proto' 2>/dev/null; then \
		echo "buf breaking proto --against $(BUF_BREAKING_REF)"; \
		buf breaking proto --against '.git#ref=$(BUF_BREAKING_REF),subdir=proto'; \
	else echo "buf breaking: $(BUF_BREAKING_REF) predates the v1 API (no errors.proto): nothing published to break"; fi

.PHONY: lint
lint: tools ## buf lint, buf breaking, go vet, golangci-lint
	buf lint
	$(MAKE) breaking
	go vet $(PKGS)
	for m in $(MODULES); do (cd $$m && golangci-lint run --allow-serial-runners ./...) || exit 1; done

.PHONY: helm-check
helm-check: $(TOOLS_BIN)/helm ## lint the Helm chart, compare its golden renders, validate them against the Kubernetes API
	helm lint --strict deploy/helm/sluice
	for f in deploy/helm/sluice/ci/*-values.yaml; do helm lint --strict deploy/helm/sluice --values $$f || exit 1; done
	go test -count=1 ./deploy/helm/...
	go test -count=1 -run 'TestChart' ./cmd/sluiced/app/

.PHONY: image
image: chdb ## OCI image tarballs of sluiced in bin/: static (split mode) and -chdb (all-in-one), no Docker needed
	mkdir -p bin/image/static bin/image/chdb
	CGO_ENABLED=0 go build -ldflags "$(VERSION_LDFLAGS)" -o bin/image/static/sluiced ./cmd/sluiced
	CGO_ENABLED=1 go build -ldflags "$(VERSION_LDFLAGS)" -o bin/image/chdb/sluiced ./cmd/sluiced
	go run ./deploy/cmd/sluiced-image -binary bin/image/static/sluiced -ref $(IMAGE_REPO):$(VERSION) \
		-version $(VERSION) -revision $(COMMIT) -created $$(git log -1 --format=%ct 2>/dev/null || echo 0) -out bin/sluiced-$(VERSION).tar
	go run ./deploy/cmd/sluiced-image -binary bin/image/chdb/sluiced -chdb-lib $(CHDB_LIB) -ref $(IMAGE_REPO):$(VERSION)-chdb \
		-version $(VERSION) -revision $(COMMIT) -created $$(git log -1 --format=%ct 2>/dev/null || echo 0) -out bin/sluiced-$(VERSION)-chdb.tar

.PHONY: tools
tools: $(TOOLS_BIN)/buf $(TOOLS_BIN)/protoc-gen-go $(TOOLS_BIN)/protoc-gen-go-grpc $(TOOLS_BIN)/golangci-lint $(TOOLS_BIN)/helm

$(TOOLS_BIN)/buf: tools/go.mod
	GOWORK=off go -C tools build -o $(TOOLS_BIN)/ github.com/bufbuild/buf/cmd/buf
$(TOOLS_BIN)/protoc-gen-go: tools/go.mod
	GOWORK=off go -C tools build -o $(TOOLS_BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go
$(TOOLS_BIN)/protoc-gen-go-grpc: tools/go.mod
	GOWORK=off go -C tools build -o $(TOOLS_BIN)/ google.golang.org/grpc/cmd/protoc-gen-go-grpc
$(TOOLS_BIN)/golangci-lint: tools/go.mod
	GOWORK=off go -C tools build -o $(TOOLS_BIN)/ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
# helm has its own module (tools/helm): its Kubernetes dependencies would move the versions the
# other tools build with. The ldflags are upstream's: the version, and the Kubernetes version of
# its client-go (1.37) as the default for templates and lint.
$(TOOLS_BIN)/helm: tools/helm/go.mod
	GOWORK=off go -C tools/helm build -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37" \
		-o $(TOOLS_BIN)/ helm.sh/helm/v3/cmd/helm

.PHONY: chdb
chdb: $(CHDB_LIB) ## fetch libchdb.so (embedded ClickHouse) into the per-user cache

$(CHDB_LIB):
	@command -v npm >/dev/null || { echo "npm is needed to fetch chDB: apt-get install -y npm"; exit 1; }
	mkdir -p $(CHDB_DIR)
	cd $(CHDB_DIR) && npm pack --silent @chdb/lib-linux-x64-gnu@$(CHDB_VERSION) >/dev/null && tar xzf chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz && rm -f chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz
	@test -f $@ && echo "chDB $(CHDB_VERSION): $@"

.PHONY: deps
deps: ## install the servers the tests run (clickhouse-server 18.16, nats-server) from Debian
	@./scripts/deps.sh

.PHONY: clean
clean: ## remove build outputs and the dev data directory
	rm -rf bin .sluice-data
