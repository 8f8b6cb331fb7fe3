# poolnet — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help demo demo-stop test lint unit conformance crds controlplane fuzz plan-examples

help:
	@echo "make demo          poolnet's main job on the embedded default: local control plane + armsim + operator + samples"
	@echo "make test          everything CI runs: lint, CRD drift, unit, property and integration tests, armsim conformance"
	@echo "make crds          regenerate config/crd/*.yaml from crates/api"
	@echo "make controlplane  build (or reuse) kube-apiserver, kube-controller-manager, kubectl, etcd"
	@echo "make conformance   check armsim against the official Azure SDK for Python"
	@echo "make fuzz          run every cargo-fuzz target for FUZZ_SECONDS (default 30) each"

demo:
	hack/demo.sh

demo-stop:
	hack/demo.sh stop

# Builds the pinned control plane from Go modules once; later runs reuse the cache.
controlplane:
	@hack/controlplane/build.sh >/dev/null

crds:
	$(CARGO) run -q -p poolnet-api --bin poolnet-crdgen -- config/crd

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit: controlplane
	POOLNET_K8S_BIN_DIR="$$(hack/controlplane/build.sh)" && export POOLNET_K8S_BIN_DIR && \
	  $(CARGO) test --locked --workspace --no-fail-fast

conformance:
	tests/armsim-conformance/run.sh

test: lint unit conformance

plan-examples:
	$(CARGO) build -q -p kubectl-poolnet
	@for f in examples/plans/seed-*.yaml; do $${CARGO_TARGET_DIR:-target}/debug/kubectl-poolnet plan -f $$f >/dev/null || exit 1; done
	@for f in examples/plans/fail-*.yaml; do ! $${CARGO_TARGET_DIR:-target}/debug/kubectl-poolnet plan -f $$f >/dev/null || exit 1; done

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := portspec armid cidr iptag route manifest
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done
