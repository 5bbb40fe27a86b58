# The two commands a user needs are `make demo` (run it) and `make test` (prove it).
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test lint typecheck imports unit e2e bench clean

$(BIN)/aisvc: pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	@touch $@

setup: $(BIN)/aisvc
	bash scripts/ci-deps.sh

demo: $(BIN)/aisvc
	$(BIN)/aisvc up -f examples/pipeline.yaml --demo

lint: $(BIN)/aisvc
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/aisvc
	$(BIN)/mypy

imports: $(BIN)/aisvc
	$(BIN)/lint-imports

test: setup lint typecheck imports
	$(BIN)/pytest

e2e: setup
	$(BIN)/pytest tests/e2e --e2e

# Serving benchmark vs KServe and MLServer (not part of `make test`; ~15 min, see benchmarks/README.md).
bench: $(BIN)/aisvc
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .tools
