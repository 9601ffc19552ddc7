# kami: the two commands of a fresh machine are `make run` and `make test`.
# Every target installs what it needs first, so a clean clone with no .venv works.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python >= 3.11 is required; prefer an explicit 3.11, else whatever python3 is.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The stamp's name carries a hash of pyproject.toml: the install reruns when the
# dependencies change, and not merely because a checkout touched the file.
PYPROJECT_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(PYPROJECT_HASH)

HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: help install chromium run test test-unit test-integration test-e2e lint bench clean

help:
	@echo "make run               install, then kami serve --demo on the embedded PostgreSQL at $(HOST):$(PORT)"
	@echo "make test              install (and Debian's chromium if missing), then ruff and the whole test suite"
	@echo "make test-unit | test-integration | test-e2e   one tier of the suite"
	@echo "make lint              ruff check"
	@echo "make bench             run the benchmarks (writes bench/results.json)"
	@echo "make install           create .venv and install kami with its test tools"
	@echo "make clean             remove .venv and caches (keeps .kami/, your data)"

install: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "make: python3.11 (or python3 >= 3.11) is needed" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "make: $(PYTHON) is older than 3.11; install python3.11 or set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(BIN)/kami serve --demo --host $(HOST) --port $(PORT)

# The browser tests drive Debian's chromium through Playwright (a browser download does not
# work here). Installed once, quietly, when missing; CI runs as root, elsewhere sudo asks.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "make: installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq >/dev/null && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: install chromium
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . \( -path ./.kami -o -path ./.git \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
