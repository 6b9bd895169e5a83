# The two commands a newcomer needs (see README.md):
#   make demo   run the main job on the local servers
#   make test   run every test on the local servers
# Everything else is a building block of those two.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONF := etc/searchlight-forward.conf
# make demo AUTH=keystone: real Keystone tokens open the live table (default: the
# demo token file)
AUTH ?= token_file

.PHONY: demo test unit servers down sample-config browser bench

# The project's virtualenv, rebuilt when its metadata changes.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

servers:
	$(PYTHON) scripts/servers.py up

down:
	$(PYTHON) scripts/servers.py down

demo: $(VENV)/.installed servers
	$(BIN)/python scripts/demo.py --config-file $(CONF) --auth $(AUTH)

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(VENV)/.installed servers browser
	$(BIN)/pytest -q tests

unit: $(VENV)/.installed
	$(BIN)/pytest -q tests/unit

sample-config: $(VENV)/.installed
	$(BIN)/oslo-config-generator --config-file etc/oslo-config-generator/searchlight-forward.conf

# Throughput, delay, memory and scaling on the local servers (docs/benchmarks.md).
bench: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py
