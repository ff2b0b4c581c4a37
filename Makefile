# Two commands do all the set-up on a fresh machine:
#   make run    install what is missing, then run the main job (local simulation)
#   make test   install what is missing, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgecloud-installed
export PATH := $(abspath $(BIN)):$(PATH)
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: install run test lint bench testbed deploy-local stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m edgecloud.deploy simulate --num-supernodes 10

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check edgecloud tests benchmarks simulations
	$(BIN)/ruff format --check edgecloud tests benchmarks simulations
	$(BIN)/mypy edgecloud

bench: $(STAMP)
	$(BIN)/python benchmarks/message_rtt.py
	$(BIN)/python benchmarks/testbed.py

# The default synthetic camera testbed (~2 min) and its black-box models (~10 min).
testbed: $(STAMP)
	$(BIN)/python -m edgecloud.data.testbed generate --out testbed-data/default
	$(BIN)/python -m edgecloud.data.testbed train-models --testbed testbed-data/default

stop:
	$(BIN)/python -m edgecloud.deploy stop --local-superlink

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
