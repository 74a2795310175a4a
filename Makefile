# Everything a new user runs starts here: the venv is built from nothing on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test test-unit test-security chaos bench sandbox up clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Yinqi needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

DEMO_HOME ?= var/demo

# The whole pipeline against the sandbox bank, in a new folder under $(DEMO_HOME)/demo/.
# `yinqi demo --payments N --seed S --json` takes a generated voucher file instead.
demo: $(STAMP)
	YINQI_HOME=$(DEMO_HOME) $(BIN)/yinqi demo

# Everything but chaos on two workers (pytest-xdist; loadfile keeps a file's tests on one
# worker, so a module's shared world is built once), then 20 chaos seeds on two workers
# (each seed is its own installation, and a seed mostly waits on the bank and on the kills).
test: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/chaos -n 2 --dist loadfile $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/chaos -q -n 2 $(PYTEST_ARGS)

# Random bank faults and SIGKILLed workers for SEEDS seeds (`make test` runs 20); ends with
# the line "chaos: N seeds, F faults, K kills, D duplicates, L lost, U unapproved".
SEEDS ?= 200
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos -q -n 2 --chaos-seeds=$(SEEDS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Attacks and bypass attempts that must be refused and audited (a part of `make test`).
test-security: $(STAMP)
	$(BIN)/python -m pytest -m security $(PYTEST_ARGS)

# Every benchmark prints one JSON object per run; figures go into docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m bench.pain001 --json
	$(BIN)/python -m bench.pipeline --payments 10000 --json
	$(BIN)/python -m bench.reconcile --lines 1000000 --json
	$(BIN)/python -m bench.backup --payments 1000000 --json

# The sandbox bank on https://127.0.0.1:8443 for manual tests (Ctrl-C stops it).
sandbox: $(STAMP)
	$(BIN)/yinqi init
	$(BIN)/yinqi sandbox-bank connect
	$(BIN)/yinqi sandbox-bank serve

# Prefect server and UI on http://127.0.0.1:4200, the sandbox bank and every deployment
# (initialises $YINQI_HOME, default var/, on first use); Ctrl-C stops everything.
up: $(STAMP)
	$(BIN)/yinqi up

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
