# Every workflow is a target. `make demo` and `make test` install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SHELL  := /bin/bash

.PHONY: demo test lint typecheck unit integration browser fuzz bench docs install chromium clean format lock

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing: run 'sudo apt-get install chromium' (needed by the browser tests)"; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/flame demo

test: $(STAMP) chromium lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

browser: $(STAMP) chromium
	$(PY) -m pytest -q tests/browser

fuzz: $(STAMP)
	$(PY) -m pytest -q tests/fuzz

bench: $(STAMP)
	$(PY) -m bench.run

# The docs are checked against the code (options, settings, endpoints, error codes).
docs: $(STAMP)
	$(PY) -m pytest -q tests/test_docs.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Refresh constraints.txt to the newest releases pyproject.toml allows (then run make test).
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test]'
	{ sed -n '1,3p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
