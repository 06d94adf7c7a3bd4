# Stevedores Dashboard: `make run` starts the dashboard, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))

.PHONY: run test lint install install-test bench drills soak clean

run: $(VENV)/.installed
	-$(BIN)/stevedores demo-data  # operations plugin: sample data in an empty database
	$(BIN)/stevedores serve

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

install: $(VENV)/.installed

install-test: $(VENV)/.test-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The core and every plugin, editable, each through its own pyproject.toml.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(BIN)/pip install --quiet -e . $(foreach p,$(PLUGIN_DIRS),-e $(p))
	touch $@

# What the tests need on top: test libraries, then system tools (Chromium, ab, redis-server).
$(VENV)/.test-installed: $(VENV)/.installed scripts/install-test-tools.sh
	$(BIN)/pip install --quiet -e '.[test]'
	sh scripts/install-test-tools.sh
	touch $@

# The guide's promises measured on the real stack; writes bench/RESULTS.md.
# Every benchmark runs; the target fails at the end if any of them missed its targets.
bench: $(VENV)/.test-installed
	status=0; \
	$(BIN)/python -m bench.harness || status=1; \
	$(BIN)/python -m bench.bench_health || status=1; \
	$(BIN)/python -m bench.bench_operations || status=1; \
	$(BIN)/python -m bench.cpu_per_request --write || status=1; \
	$(BIN)/python -m bench.instructions_per_request --write || status=1; \
	exit $$status

# Fault drills under load (DRILL_SECONDS=15 each by default): one instance, then the fleet.
drills: $(VENV)/.test-installed
	$(BIN)/python -m bench.drills
	$(BIN)/python -m bench.fleet

# Hours, not minutes (SOAK_SECONDS=600 by default): load, Redis killed every minute, recycles,
# SIGHUP and memory pressure in a 512 MB cgroup; fails on growth, lost metrics or 5xx.
# Writes the "Soak" section of bench/RESULTS.md and bench/soak.png.
SOAK_SECONDS ?= 600
soak: $(VENV)/.test-installed
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build *.egg-info core/*.egg-info plugins/*/*.egg-info
