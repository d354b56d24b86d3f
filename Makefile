# Paydesk: `make run` and `make test` are the two commands (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUN_VERSION := 1.4.5
BUN := .tools/node_modules/.bin/bun

export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)
export REFLEX_USE_SYSTEM_BUN := 1

.PHONY: install run test lint bench clean

CHROMIUM := /usr/bin/chromium

## install: .venv (Python 3.11, paydesk editable with dev extras), bun for Reflex, and Chromium for
## the browser tests; quick when nothing changed
install: $(STAMP) $(BUN) chromium

# The browser tests drive the system Chromium (Playwright's own download does not work here).
.PHONY: chromium
chromium:
	@test -x $(CHROMIUM) && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	else \
		echo "Chromium is missing: install it as root with 'apt-get install -y chromium' ($(CHROMIUM)); the browser tests skip without it (and fail with CI=true)" >&2; \
	fi

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: '$(PYTHON)' was not found on PATH" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

$(BUN):
	@command -v npm >/dev/null || { echo "npm is required to install bun for the Reflex dashboard" >&2; exit 1; }
	npm install --prefix .tools --no-audit --no-fund --no-save --loglevel=error bun@$(BUN_VERSION)
	@$(BUN) --version >/dev/null

## run: migrate, seed demo data if empty, create the demo admin, start every service (Ctrl-C stops them)
run: install
	$(BIN)/paydesk dev

## lint: ruff, and mypy (strict on payments_core)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --strict payments_core
	$(BIN)/mypy webhook_server dashboard

## test: lint, then the whole suite on SQLite and PostgreSQL
test: install lint
	$(BIN)/python -m pytest

## bench: benchmarks, printed as ratios against a baseline measured in the same run
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
