# The project's vocabulary. `make test` is the one command that runs every test: CI (.ci/run)
# and the README use it. It installs the real peers the tests compare with first
# (scripts/test-deps.sh: promtool/prometheus, wrk, hyperfine, the Python venv).

CARGO ?= cargo
VENV_PYTHON := $(CURDIR)/.venv/bin/python

.PHONY: test lint bench fmt deps soak loadtest dashboards image

# The pinned Go tools (scripts/build-tools.sh: kubectl, helm, kapp, ...) come first on PATH, so
# the tests use them and not whatever a machine has. PROMFED_REQUIRE_TOOLS=1 turns a test's "SKIPPED: needs <tool>" into a failure, so this target
# never passes while skipping. `cargo test` (not --all-targets) also runs the doc tests;
# --no-fail-fast reports every failing target, not only the first. clippy
# --all-targets below still type-checks the benches.
test: deps image
	PATH="$$(scripts/build-tools.sh path):$$PATH" PROMFED_REQUIRE_TOOLS=1 PROMFED_IMAGE=$(IMAGE) PROMFED_PYTHON=$(VENV_PYTHON) $(CARGO) test --no-fail-fast
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Criterion benches; the baseline peers (tests/peers/*.py) run in the venv.
bench: deps
	PROMFED_PYTHON=$(VENV_PYTHON) $(CARGO) bench
	scripts/bench.sh

fmt:
	$(CARGO) fmt

# The scripts people run, under the project's names. `make soak` drives the release binary at a
# steady rate with the tests' own client (SOAK_SECONDS, SOAK_RATE; 600 s at 50 requests/s);
# `make loadtest` benchmarks it next to nginx with wrk; `make dashboards` regenerates
# deploy/dashboards/configmaps.yaml from dashboards/ (a test fails while it is stale).
SOAK_SECONDS ?= 600
SOAK_RATE ?= 50

soak:
	scripts/soak.sh $(SOAK_SECONDS) $(SOAK_RATE)

loadtest: deps
	scripts/loadtest.sh

dashboards:
	scripts/dashboards-configmaps.sh

deps:
	scripts/test-deps.sh

# promfed's OCI image archive, built without a daemon (scripts/image.sh: the static release
# binary, umoci, the Dockerfile's config). The path is stable: docs/install.md pushes it with
# skopeo, the tests and the node mode of scripts/kube-local.sh import it.
IMAGE := $(CURDIR)/target/promfed-image.tar

image:
	scripts/image.sh $(IMAGE)
