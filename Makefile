.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: build-dev
build-dev: ## Create both dev environments and build the extension (scripts/bootstrap)
	scripts/bootstrap

.PHONY: format
format: ## Format Rust and Python
	cargo fmt
	$(VENV)/bin/ruff format python tests bench
	$(VENV)/bin/ruff check --fix python tests bench

.PHONY: lint
lint: build-dev ## cargo fmt --check, clippy -D warnings, ruff, mypy --strict, stubtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench scripts/matrix scripts/test-installed
	$(VENV)/bin/ruff format --check python tests bench scripts/matrix scripts/test-installed
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/mypy --strict python
	$(PY) -m mypy.stubtest adk_token_exchange._native

.PHONY: test
test: ## Everything CI runs (scripts/test)
	scripts/test

.PHONY: demo
demo: ## Run the demo against the local Google emulator
	scripts/demo

.PHONY: bench
bench: build-dev ## Benchmarks against ADK's own exchanger (bench/run)
	bench/run

.PHONY: fuzz
fuzz: ## Run each fuzz target for a fixed time (fuzz/run)
	fuzz/run
