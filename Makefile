# Two commands matter: `make run` (set up + offline assets + the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch 2.13.0 is available offline here; on a GPU box pass a CUDA build,
# e.g. `make run TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"`.
TORCH_SPEC ?= torch==2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ARGS ?=

MAIN_ASSETS := --only smollm2-135m --only python-stdlib --only wikipedia

.PHONY: venv assets assets-main run test test-slow lint clean-outputs

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

assets: venv  ## prepare every offline asset, incl. the house model (~10 min once; idempotent)
	$(OFFLINE) $(BIN)/python -m mudman.assets

assets-main: venv  ## only what the main job needs (SmolLM2, stdlib Python, Wikipedia)
	$(OFFLINE) $(BIN)/python -m mudman.assets $(MAIN_ASSETS)

run: assets-main  ## the main job: one MUDMAN trial + baseline on SmolLM2-135M, offline, CPU ok
	$(OFFLINE) $(BIN)/python -m mudman experiment=quickstart $(ARGS)

test: venv  ## lint + the offline test suite (tiny models built in code)
	$(BIN)/ruff check mudman tests scripts
	$(OFFLINE) WANDB_MODE=disabled $(BIN)/python -m pytest -q $(ARGS)

test-slow: venv assets-main  ## also the opt-in tests on the real SmolLM2 asset
	$(OFFLINE) WANDB_MODE=disabled $(BIN)/python -m pytest -q --run-slow $(ARGS)

lint: venv
	$(BIN)/ruff check mudman tests scripts
	$(BIN)/ruff format --check mudman tests scripts

clean-outputs:
	rm -rf outputs
