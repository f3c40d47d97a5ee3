# The two commands of the README (`make demo`, `make test`) and `make dev`; each installs first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The locked distributions, downloaded once: the install reads them from here, and so does the test that
# builds the code location's image (zenskar_pipeline_tests/test_image.py), instead of downloading them again.
WHEELHOUSE := $(VENV)/wheelhouse
export TZ := UTC
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# `make dev LIVE=1`: the local warehouse's demo usage events also get a new Delta version every few seconds.
LIVE ?=

.PHONY: install system-packages demo test lint typecheck pytest dev prod-local lock bench clean

# Both distributions, editable: the product and, beside it, its dev tools (devtools/: the local warehouse, the
# demo, `dev`). Their dependencies come from the one lock, so neither install resolves anything.
$(BIN)/.installed: requirements.lock pyproject.toml devtools/pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip download --quiet --no-deps -r requirements.lock "setuptools>=68" -d $(WHEELHOUSE)
	$(BIN)/pip install --quiet --no-index --find-links $(WHEELHOUSE) -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e . -e devtools
	touch $@

install: $(BIN)/.installed

# The tests' Node packages (Azurite, the Azure Storage emulator the object-store tests start), from their lock.
devtools/node_modules/.installed: devtools/package-lock.json | system-packages
	npm ci --prefix devtools --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(BIN)/zenskar-pipeline demo

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# PostgreSQL's server programs, Node.js and Chromium, from the machine's packages when missing.
system-packages:
	devtools/system-packages.sh

pytest: install system-packages devtools/node_modules/.installed
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

dev: install
	$(BIN)/zenskar-pipeline dev $(if $(filter 1 yes true,$(LIVE)),--live)

# The production instance on this machine (deploy/dagster.yaml): PostgreSQL under .prod-local/, the code
# location's gRPC server, dagster-daemon and dagster-webserver, each its own process. Needs Debian's
# `postgresql` package (`apt-get install postgresql`).
prod-local: install
	$(BIN)/zenskar-pipeline prod-local

# Re-pin every dependency of both distributions after a change to either pyproject.toml (needs uv:
# `pip install uv`). The product itself is not pinned: it is installed from this repository.
# requirements-deploy.lock is the image's: the product and its k8s extra, without the dev tools.
lock:
	uv pip compile pyproject.toml devtools/pyproject.toml --extra dev --extra k8s --python-version 3.11 \
		--no-emit-package zenskar-pipeline -o requirements.lock
	uv pip compile pyproject.toml --extra k8s -c requirements.lock --python-version 3.11 \
		--no-emit-package zenskar-pipeline -o requirements-deploy.lock
	uv pip compile pyproject.toml devtools/pyproject.toml --extra dev --extra bench -c requirements.lock \
		--python-version 3.11 --no-emit-package zenskar-pipeline -o requirements-bench.lock

# The `bench` extra (dlt, for benchmarks/peer_dlt.py) on top of the install: requirements-bench.lock pins
# what requirements.lock pins at the same versions, and dlt's own dependencies besides.
$(BIN)/.bench-installed: requirements-bench.lock $(BIN)/.installed
	$(BIN)/pip install --quiet -r requirements-bench.lock
	touch $@

# One benchmark at a time: each measures speed and memory, so they must not compete with each other.
bench: install $(BIN)/.bench-installed
	$(BIN)/python benchmarks/local_warehouse_read.py
	$(BIN)/python benchmarks/sync_full.py
	$(BIN)/python benchmarks/sync_first_keyed.py
	$(BIN)/python benchmarks/sync_noop.py
	$(BIN)/python benchmarks/hourly_year.py
	$(BIN)/python benchmarks/sync_backfill.py
	$(BIN)/python benchmarks/definitions_load.py
	$(BIN)/python benchmarks/sensor_tick.py
	$(BIN)/python benchmarks/change_feed.py
	$(BIN)/python benchmarks/peer_dlt.py

clean:
	rm -rf $(VENV) .dagster_home .prod-local data .zenskar-pipeline devtools/node_modules
