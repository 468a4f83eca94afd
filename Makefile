# mam-gateway: `make run` starts the demo gateway, `make test` runs every check.
# Both install what they need first (Python deps from uv.lock, buf from package-lock.json).

PYTHON ?= python3
UV := $(PYTHON) -m uv
# pip installs uv only; run as root (a container, CI) it would warn about that on every first run.
export PIP_ROOT_USER_ACTION := ignore
BUF := node_modules/.bin/buf
CONFIG ?= deploy/config/demo.toml
PYTEST_ARGS ?=
# pytest workers (pytest-xdist): one per core by default; whole files per worker, so a module's
# fixtures (the crash test's 1,000-account templates, say) are made once. 0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile
GO ?= go
MVN ?= mvn -B --no-transfer-progress -Dstyle.color=never
TS_CLIENT := clients/typescript
TS_DEPS := $(TS_CLIENT)/node_modules/.installed

.PHONY: help deps run test lint proto check-proto pytest postgres-binaries bench clean bytecode
.PHONY: prometheus-binaries
.PHONY: clients check-clients test-clients test-go-client test-java-client test-typescript-client
.PHONY: test-python-client test-lowest-deps crash-test-long

help:
	@echo "make run          start the gateway on $(CONFIG) (SQLite under var/, simulated terminals)"
	@echo "make test         every check CI runs, in this order:"
	@echo "                  lint: ruff check and format, mypy, buf lint and format"
	@echo "                  check-proto, check-clients: generated code up to date with protos/"
	@echo "                  test-lowest-deps: tests/unit on the lowest dependency versions allowed"
	@echo "                  pytest: tests/ (unit, contract, integration, e2e, fault, abuse) on"
	@echo "                    every core, on SQLite and PostgreSQL (apt-installs PostgreSQL and"
	@echo "                    Prometheus when missing, as root)"
	@echo "                  test-clients: the Go, Java, TypeScript and Python client suites"
	@echo "                  (each part runs alone too: make lint, make pytest PYTEST_ARGS=tests/unit)"
	@echo "make test-lowest-deps  the unit tests on the lowest versions pyproject.toml allows (.venv-lowest)"
	@echo "make crash-test-long   the SIGKILL crash test at 100 seeded kill points per database (~13 min)"
	@echo "make proto        regenerate gateway/_proto from protos/"
	@echo "make clients      regenerate the Go, TypeScript and Python client code (clients/) from protos/,"
	@echo "                  and the blocking Python client from the asyncio one"
	@echo "make test-clients run the Go, Java, TypeScript and Python client tests against a real gateway"
	@echo "make bench        run the benchmarks (~10 min; summary + bench/results/*.json); BENCH_ARGS=--smoke"

deps: .venv/.synced $(BUF)

# uv itself comes from PyPI; everything else from the lock files.
.venv/.synced: pyproject.toml uv.lock
	@echo "installing the Python dependencies (uv.lock) into .venv/: ~20 s the first time"
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The demo keeps the simulated broker's books beside its database, so that a restart finds
# the positions its stored orders opened (and reconciles any order a crash left open), and runs
# the demo strategy on the group's source account (MAM__DEMO__STRATEGY=false: not).
run: .venv/.synced
	@mkdir -p var
	@echo "mamctl, in another shell here: source .venv/bin/activate; export MAM_API_KEY=\$$(cat var/admin.key)"
	MAM__SIMULATOR__STATE_PATH=$${MAM__SIMULATOR__STATE_PATH-var/sim-broker.db} \
		MAM__DEMO__STRATEGY=$${MAM__DEMO__STRATEGY-true} \
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

# Bytecode for our own sources too: the tests start many gateway processes, and where
# PYTHONDONTWRITEBYTECODE is set each would otherwise compile every module again (~2 s a start).
bytecode: .venv/.synced
	@$(UV) run --frozen python -m compileall -q gateway clients/python/src tests bench >/dev/null

pytest: .venv/.synced postgres-binaries prometheus-binaries bytecode
	$(UV) run --frozen pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The store tests start their own throwaway PostgreSQL server (tests/postgres.py): they need the
# server binaries, installed here from Debian when missing (as root, as on CI).
# MAM_TEST_SKIP_POSTGRES=1 skips both this and those tests (by hand only: .ci/run refuses it).
postgres-binaries:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ "$$MAM_TEST_SKIP_POSTGRES" = 1 ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the PostgreSQL server (apt-get install postgresql) for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null; \
	else \
		echo "PostgreSQL server binaries missing: apt-get install postgresql (as root)," \
			"or set MAM_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests" >&2; \
		exit 1; \
	fi

# The Prometheus test scrapes a gateway with a real Prometheus server and checks the shipped rules
# with promtool (tests/e2e/test_prometheus.py): Debian's prometheus package, installed here when
# missing (as root, as on CI). MAM_TEST_SKIP_PROMETHEUS=1 skips both (by hand only: .ci/run
# refuses it).
prometheus-binaries:
	@if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
			|| [ "$$MAM_TEST_SKIP_PROMETHEUS" = 1 ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Prometheus (apt-get install prometheus) for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus >/dev/null; \
	else \
		echo "Prometheus missing: apt-get install prometheus (as root)," \
			"or set MAM_TEST_SKIP_PROMETHEUS=1 to skip the Prometheus tests" >&2; \
		exit 1; \
	fi

test: lint check-proto check-clients test-lowest-deps pytest test-clients

# The floors in pyproject.toml are true: a venv of its own holds the lowest version of each
# direct dependency they allow (uv's lowest-direct resolution; their own dependencies at the
# newest), made again when a pyproject.toml changes, and the generated-code check and the unit
# tests run on it. `python -m uv pip` is given the venv's interpreter: it would otherwise install
# into the interpreter that runs uv.
LOWEST_VENV := .venv-lowest
$(LOWEST_VENV)/.synced: pyproject.toml clients/python/pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	rm -rf $(LOWEST_VENV)
	$(UV) venv --quiet --python $(PYTHON) $(LOWEST_VENV)
	$(UV) pip install --quiet --python $(LOWEST_VENV)/bin/python --resolution lowest-direct \
		--compile-bytecode -e . --group dev
	@touch $@

test-lowest-deps: $(LOWEST_VENV)/.synced bytecode
	PATH="$(CURDIR)/$(LOWEST_VENV)/bin:$$PATH" $(LOWEST_VENV)/bin/python scripts/gen_protos.py --check
	$(LOWEST_VENV)/bin/python -m pytest tests/unit -q -p no:cacheprovider $(PYTEST_PARALLEL)

# Client stubs in Go, Java, TypeScript and Python (README.md, "Clients"). Go, TypeScript and
# Python code is committed and checked for staleness; Maven generates Java at build. Go modules come
# from go.sum, npm packages from clients/typescript/package-lock.json, Maven artifacts from pom.xml's
# pins; the Python client (mam-client, with mamctl) is a uv workspace member installed by uv.lock.
$(TS_DEPS): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clients: .venv/.synced $(TS_DEPS)
	$(UV) run --frozen python clients/gen_clients.py

check-clients: .venv/.synced $(TS_DEPS)
	$(UV) run --frozen python clients/gen_clients.py --check

# Each suite starts its own gateway on a free port (clients/testing/start_gateway.py; the Python
# suite starts `python -m gateway` itself, clients/python/tests/conftest.py).
test-clients: test-go-client test-java-client test-typescript-client test-python-client

test-go-client: .venv/.synced bytecode
	cd clients/go && $(GO) vet ./... && $(GO) test -count=1 ./...

test-java-client: .venv/.synced bytecode
	cd clients/java && $(MVN) test

test-typescript-client: .venv/.synced bytecode $(TS_DEPS)
	cd $(TS_CLIENT) && npm test

test-python-client: .venv/.synced bytecode
	$(UV) run --frozen pytest clients/python/tests $(PYTEST_ARGS)

# Every scenario of bench/ (docs/performance.md): a summary with targets, and JSON under
# bench/results/. BENCH_ARGS: --smoke (seconds), --sustained-seconds N, --no-postgres, scenarios.
BENCH_ARGS ?=
bench: .venv/.synced bytecode
	$(UV) run --frozen python -m bench $(BENCH_ARGS)

# The SIGKILL crash test at many more kill points than `make test` runs (docs/durability.md):
# MAM_CRASH_POINTS per database of MAM_CRASH_DATABASES, point i killed as seed
# MAM_CRASH_SEED + i draws, each seed printed with its point; the figures are printed at the end.
MAM_CRASH_POINTS ?= 100
MAM_CRASH_SEED ?= 1000
MAM_CRASH_DATABASES ?= sqlite,postgresql
crash-test-long: .venv/.synced postgres-binaries bytecode
	MAM_CRASH_POINTS=$(MAM_CRASH_POINTS) MAM_CRASH_SEED=$(MAM_CRASH_SEED) \
		MAM_CRASH_DATABASES=$(MAM_CRASH_DATABASES) \
		$(UV) run --frozen pytest tests/e2e/test_crash_recovery.py -v -s -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf .venv .venv-lowest node_modules var .pytest_cache .mypy_cache .ruff_cache
	rm -rf clients/java/target $(TS_CLIENT)/node_modules $(TS_CLIENT)/dist
