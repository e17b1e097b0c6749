PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/paper.toml

.PHONY: install run test lint typecheck unit bench efficacy clean chaos crash fuzz many-daemons

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/levbot run --config $(CONFIG)

lint: install
	$(BIN)/ruff check bot tests benchmarks
	$(BIN)/ruff format --check bot tests benchmarks

typecheck: install
	$(BIN)/mypy --strict bot

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install
	$(BIN)/python -m benchmarks.run

efficacy: install
	$(BIN)/python -m benchmarks.efficacy | tee benchmarks/efficacy.md

# The long chaos and crash runs against `levbot paper-exchange` (short versions run in
# `make test`); each prints its figures: trials, faults injected by kind, actions, mismatches.
CHAOS_SECONDS ?= 240
# 30% of every request broken, every kind; lost write replies added on top, since a
# run only makes a few dozen writes and they are the faults that matter most.
CHAOS_FAULTS ?= all:0.3,writes:lost=0.2
CHAOS_SEED ?= 20210519
CRASH_TRIALS ?= 100

chaos: install
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_SEED=$(CHAOS_SEED) \
		$(BIN)/pytest -q -s tests/e2e/test_chaos.py

# Fresh random examples for the config loader's fuzz (make test runs a fixed 300).
FUZZ_EXAMPLES ?= 5000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/unit/app/test_config_fuzz.py

crash: install
	CRASH_TRIALS=$(CRASH_TRIALS) $(BIN)/pytest -q -s tests/e2e/test_crash.py

# Several `levbot run` processes sharing accounts on one PostgreSQL (leases, fencing,
# takeover after kill -9); `make test` runs a ~50 s version.
MANY_DAEMONS_RUN_SECONDS ?= 120
MANY_DAEMONS_LEASE_SECONDS ?= 15
many-daemons: install
	MANY_DAEMONS_RUN_SECONDS=$(MANY_DAEMONS_RUN_SECONDS) \
		MANY_DAEMONS_LEASE_SECONDS=$(MANY_DAEMONS_LEASE_SECONDS) \
		$(BIN)/pytest -q -s tests/e2e/test_many_daemons.py

clean:
	rm -rf $(VENV) build *.egg-info
