# poolnet — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: test lint unit crds controlplane fuzz help

help:
	@echo "make test          everything CI runs: lint, CRD drift, unit, property and integration tests"
	@echo "make crds          regenerate config/crd/*.yaml from crates/api"
	@echo "make controlplane  build (or reuse) kube-apiserver, kube-controller-manager, kubectl, etcd"
	@echo "make fuzz          run every cargo-fuzz target for FUZZ_SECONDS (default 30) each"

# Builds the pinned control plane from Go modules once; later runs reuse the cache.
controlplane:
	@hack/controlplane/build.sh >/dev/null

crds:
	$(CARGO) run -q -p poolnet-api --bin poolnet-crdgen -- config/crd

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test: controlplane lint
	POOLNET_K8S_BIN_DIR="$$(hack/controlplane/build.sh)" $(CARGO) test --workspace --locked

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := portspec armid cidr iptag route manifest
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done
