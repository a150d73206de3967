# Every target bootstraps .venv on first use, so a fresh clone needs nothing done first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean compile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q feeds
	touch $(STAMP)

# Bytecode is written here, not left to the first run: cron may run with
# PYTHONDONTWRITEBYTECODE=1, and a module without a current .pyc is then compiled again at
# every start. Cheap when nothing changed.
compile: $(STAMP)
	$(BIN)/python -m compileall -q feeds

run: compile
	$(BIN)/feeds build -v

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check feeds tests benchmarks
	$(BIN)/mypy

bench: compile
	$(BIN)/python benchmarks/bench.py $(if $(SCALE),--scale)

clean:
	rm -rf output state benchmarks/.work tests/.artifacts
