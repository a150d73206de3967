# Every target bootstraps .venv on first use, so a fresh clone needs nothing done first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# axe-core for the accessibility tests, from npm, pinned by tests/js/package-lock.json.
AXE    := tests/js/node_modules/axe-core/axe.min.js

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

# Without npm the accessibility tests skip, except in CI (CI=true), where they fail.
$(AXE): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/js --no-audit --no-fund --silent && touch $(AXE); \
	else \
		echo "npm not found: axe-core is not installed, the accessibility tests will skip"; \
	fi

test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check feeds tests benchmarks
	$(BIN)/mypy

bench: compile
	$(BIN)/python benchmarks/bench.py $(if $(SCALE),--scale)

clean:
	rm -rf output state benchmarks/.work tests/.artifacts tests/js/node_modules
