# poolnet — developer entry points. `make test` is what CI runs (.ci/run).
# Every target's line carries a `## ` comment: `make help` prints those, so the list cannot drift.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
.DEFAULT_GOAL := help

# Crates with no I/O: their tests need neither an API server nor armsim.
PURE_CRATES := poolnet-api poolnet-plan poolnet-preflight

.PHONY: help demo demo-stop test lint cargo-test unit integration conformance chart-test helm crds controlplane fuzz plan-examples dist dist-check reliability reliability-smoke

help: ## list every target, one line each (the default target)
	@awk '/^[a-zA-Z0-9_-]+:([^=]|$$)/ { t = $$0; sub(/:.*/, "", t); d = $$0; \
	  if (!sub(/.*## /, "", d)) d = "(no ## comment on its line in the Makefile)"; \
	  printf "make %-14s %s\n", t, d }' $(firstword $(MAKEFILE_LIST))

demo: ## poolnet's main job on the embedded default: local control plane + armsim + operator + samples
	hack/demo.sh

demo-stop: ## stop what `DEMO_KEEP=1 make demo` left running
	hack/demo.sh stop

# Builds the pinned control plane from Go modules once; later runs reuse the cache.
controlplane: ## build (or reuse) kube-apiserver, kube-controller-manager, kubectl, etcd
	@hack/controlplane/build.sh >/dev/null

crds: ## regenerate config/crd/*.yaml and the chart's CRD templates (charts/poolnet/templates/crds/) from crates/api
	$(CARGO) run -q -p poolnet-api --bin poolnet-crdgen -- config/crd charts/poolnet/templates/crds

lint: ## cargo fmt --check and clippy -D warnings on the whole workspace
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# One cargo invocation for the whole workspace, so dependencies are built with one feature set.
cargo-test: controlplane ## every cargo test: unit, property, CRD drift, armsim, CLI and API-server integration tests
	POOLNET_K8S_BIN_DIR="$$(hack/controlplane/build.sh)" && export POOLNET_K8S_BIN_DIR && \
	  $(CARGO) test --locked --workspace --no-fail-fast

unit: ## unit and property tests of the pure crates (api, plan, preflight); no API server, no armsim
	$(CARGO) test --locked --no-fail-fast $(addprefix -p ,$(PURE_CRATES))

integration: controlplane ## tests/ only: operator, webhooks and CRDs against a real kube-apiserver + etcd
	POOLNET_K8S_BIN_DIR="$$(hack/controlplane/build.sh)" && export POOLNET_K8S_BIN_DIR && \
	  $(CARGO) test --locked --no-fail-fast -p poolnet-tests

conformance: ## check armsim against the official Azure SDK for Python
	tests/armsim-conformance/run.sh

# Built from its Go module once (hack/helm/version.env pins it); later runs reuse the cache.
helm: ## build (or reuse) the pinned helm used by chart-test
	@hack/helm/build.sh >/dev/null

chart-test: controlplane helm ## charts/poolnet: lint, ci values dry-run as restricted, install, RBAC, upgrade, operator run, uninstall
	hack/chart-test.sh

# The fault matrix (docs/reliability.md). A failing run prints the command that reruns it.
SCENARIOS ?= all
SEEDS ?= 1,2,3
WINDOW ?= 60s
RELIABILITY = POOLNET_K8S_BIN_DIR="$$(hack/controlplane/build.sh)" && export POOLNET_K8S_BIN_DIR && \
	  $(CARGO) build --locked -q -p poolnet-operator --bin poolnet-operator && \
	  $(CARGO) run --locked -q -p poolnet-tests --bin poolnet-reliability --

reliability: controlplane ## the fault matrix: SCENARIOS (all) x SEEDS (1,2,3), WINDOW of faults each (about 70 min)
	$(RELIABILITY) --scenarios $(SCENARIOS) --seeds $(SEEDS) --window $(WINDOW)

reliability-smoke: controlplane ## the matrix's subset in make test: the mixed scenario, 2 fixed seeds (about 5 min)
	$(RELIABILITY) --scenarios mixed --seeds 1,2 --window 45s

test: lint cargo-test conformance chart-test dist-check reliability-smoke ## everything CI runs: lint, then all cargo tests, armsim conformance, the Helm chart, the krew install, the fault-matrix subset

dist: ## kubectl-poolnet release archives for this platform, their sha256 and a krew manifest, in dist/ (hack/dist/dist.sh)
	hack/dist/dist.sh

dist-check: controlplane ## make dist, then krew (built from its Go module, cached) installs it, kubectl runs it, a bad sha256 is refused
	hack/dist/check.sh

plan-examples: ## run kubectl-poolnet on examples/plans/ (seed-* pass, fail-* fail): the CLI's cargo test
	$(CARGO) test --locked -p kubectl-poolnet --test plan_examples

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := portspec armid cidr iptag route manifest
# Installing toolchains is the developer's call, so missing tools stop the run with the command.
fuzz: ## run every cargo-fuzz target for FUZZ_SECONDS (default 30) each; needs nightly and cargo-fuzz
	@$(CARGO) +nightly --version >/dev/null 2>&1 || \
	  { echo "make fuzz: the nightly toolchain is missing; install it with: rustup toolchain install nightly" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null || \
	  { echo "make fuzz: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2; exit 1; }
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done
