# mam-gateway: `make run` starts the demo gateway, `make test` runs every check.
# Both install what they need first (Python deps from uv.lock, buf from package-lock.json).

PYTHON ?= python3
UV := $(PYTHON) -m uv
BUF := node_modules/.bin/buf
CONFIG ?= deploy/config/demo.toml
PYTEST_ARGS ?=

.PHONY: help deps run test lint proto check-proto pytest bench clean

help:
	@echo "make run          start the gateway on $(CONFIG) (SQLite under var/, simulated terminals)"
	@echo "make test         lint, type-check, buf lint, generated-code check, pytest"
	@echo "make proto        regenerate gateway/_proto from protos/"
	@echo "make bench        run the benchmarks in bench/ (JSON + summary)"

deps: .venv/.synced $(BUF)

# uv itself comes from PyPI; everything else from the lock files.
.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --quiet
	@touch $@

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: .venv/.synced
	@mkdir -p var
	$(UV) run --frozen mam-gateway --config $(CONFIG)

proto: .venv/.synced
	$(UV) run --frozen python scripts/gen_protos.py

check-proto: .venv/.synced
	$(UV) run --frozen python scripts/gen_protos.py --check

lint: deps
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(BUF) lint
	$(BUF) format --diff --exit-code

pytest: .venv/.synced
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test: lint check-proto pytest

bench: .venv/.synced
	$(UV) run --frozen python -m bench

clean:
	rm -rf .venv node_modules var .pytest_cache .mypy_cache .ruff_cache
