SHELL := /bin/bash
# Two commands matter: `make run` (set up + offline assets + the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch 2.13.0 is available offline here; on a GPU box pass a CUDA build,
# e.g. `make run TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"`.
TORCH_SPEC ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ARGS ?=
# The lock: exact versions the suite passed on (pip constraints); see docs/installs.md.
LOCK := constraints.txt
LATEST := .venv-latest
OLDEST := .venv-oldest
# The lowest transformers pyproject.toml admits (the API the code adapts to); pip resolves the rest.
OLDEST_SPECS := "transformers==5.0.0"
PYTEST := $(OFFLINE) WANDB_MODE=disabled

MAIN_ASSETS := --only smollm2-135m --only python-stdlib --only wikipedia

.PHONY: help venv assets assets-main run test test-fast test-slow test-latest test-oldest lock lint bench clean-outputs
.DEFAULT_GOAL := help

help:  ## list the targets
	@echo "mudman: make TARGET [ARGS=\"hydra overrides or pytest args\"]"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' \
		| awk -F'\t' '{printf "  %-13s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## .venv with the locked versions (constraints.txt)

# A fresh venv (or a changed pyproject.toml / lock) installs exactly the locked versions.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $@

assets: venv  ## prepare every offline asset, incl. the house model (~10 min once; idempotent)
	$(OFFLINE) $(BIN)/python -m mudman.assets

assets-main: venv  ## only what the main job needs (SmolLM2, stdlib Python, Wikipedia)
	$(OFFLINE) $(BIN)/python -m mudman.assets $(MAIN_ASSETS)

run: assets-main  ## the main job: one MUDMAN trial + baseline on SmolLM2-135M, offline, CPU ok
	$(OFFLINE) $(BIN)/python -m mudman experiment=quickstart $(ARGS)

test: venv  ## lint + the offline test suite (tiny models built in code)
	$(BIN)/ruff check mudman tests scripts
	$(PYTEST) $(BIN)/python -m pytest -q $(ARGS)

test-fast: venv  ## lint + the tests that start no process, on every core (`make test`: all)
	$(BIN)/ruff check mudman tests scripts
	$(PYTEST) $(BIN)/python -m pytest -q -m "not spawns" -n auto $(ARGS)

test-slow: venv assets-main  ## also the opt-in tests on the real SmolLM2 asset
	$(PYTEST) $(BIN)/python -m pytest -q --run-slow $(ARGS)

test-latest:  ## the suite on the NEWEST versions pyproject.toml admits (finds drift on purpose)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	@$(LATEST)/bin/python -m pip freeze --exclude-editable | diff <(grep -v '^#' $(LOCK)) - \
		| grep '^[<>]' | grep -v -i -E '^[<>] torch==' || echo "latest = the lock"
	$(PYTEST) $(LATEST)/bin/python -m pytest -q $(ARGS)

test-oldest:  ## the suite on the LOWEST supported transformers (the other end of the range)
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q $(TORCH_SPEC)
	$(OLDEST)/bin/python -m pip install -q -e '.[dev]' $(OLDEST_SPECS)
	$(PYTEST) $(OLDEST)/bin/python -m pytest -q $(ARGS)

lock:  ## write constraints.txt from .venv-latest (after `make test-latest` passed)
	bash scripts/lock.sh $(LATEST)

lint: venv  ## ruff check + format check
	$(BIN)/ruff check mudman tests scripts
	$(BIN)/ruff format --check mudman tests scripts

bench: venv  ## a benchmark, e.g. ARGS="trial model=house" (no ARGS: the list; docs/scripts.md)
	$(PYTEST) $(BIN)/python -m scripts.bench $(or $(ARGS),--help)

clean-outputs:  ## delete outputs/ (run and sweep directories)
	rm -rf outputs
