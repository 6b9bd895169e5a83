# The two commands a newcomer needs (see README.md):
#   make demo   run the main job on the local servers
#   make test   run every test on the local servers
# Everything else is a building block of those two.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONF := etc/searchlight-forward.conf
# make demo AUTH=token_file: the demo token file opens the WebSocket instead of
# the Horizon session's Keystone token (Horizon's live tables then cannot log in)
AUTH ?= keystone
# make demo SEARCH=opensearch: the demo on the local OpenSearch 2.19 (default:
# Elasticsearch 8.19; scripts/servers.py up starts both)
SEARCH ?= elasticsearch
# The functional tests that touch the index, run again on OpenSearch by `make test`
# (README, "Elasticsearch and OpenSearch"): indexing and newest wins, kill -9, the
# change reader on three shards, cursor ownership, index layout and rebuild,
# WebSocket resume, live search's evaluator and snapshots, Searchlight's v1 search
# (its shape, language, refusals and the hidden-field property).
WS_TESTS := tests/functional/test_websocket.py
SL_TESTS := tests/functional/test_searchlight_search.py
OPENSEARCH_TESTS := tests/functional/test_listener.py tests/functional/test_crash.py \
	tests/functional/test_changelog.py tests/functional/test_cursors.py tests/functional/test_indices.py \
	$(WS_TESTS)::test_projects_and_roles_are_separated \
	$(WS_TESTS)::test_reconnect_with_cursor_misses_nothing_and_nothing_older \
	$(WS_TESTS)::test_rebuilt_index_cursor_forces_full_resync \
	tests/functional/test_livesearch_agreement.py \
	tests/functional/test_livesearch.py::test_a_snapshot_reflects_exactly_its_position \
	$(SL_TESTS)::test_a_member_searches_their_project_in_searchlights_shape \
	$(SL_TESTS)::test_the_wider_language \
	$(SL_TESTS)::test_a_hidden_field_is_refused_exactly_like_a_missing_one \
	$(SL_TESTS)::test_refusals_name_the_rule \
	tests/functional/test_searchlight_hidden_fields.py::test_a_hidden_field_or_value_anywhere_reads_as_a_missing_one

.PHONY: demo test lint-imports test-opensearch unit functional browser-tests servers test-servers test-ready down sample-config bench bench-subscriptions bench-livesearch bench-horizon bench-search bench-scale faults

# The project's virtualenv, rebuilt when its metadata changes. The telco consumer
# is an example client, installed beside the service (not part of it); the Horizon
# plugin (horizon-plugin/) is its own distribution, here for its pure tests (Horizon
# itself runs from its own venv: scripts/servers.py).
$(VENV)/.installed: setup.cfg pyproject.toml examples/telco-consumer/pyproject.toml \
		horizon-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e examples/telco-consumer -e horizon-plugin
	touch $@

servers:
	$(PYTHON) scripts/servers.py up

down:
	$(PYTHON) scripts/servers.py down

demo: $(VENV)/.installed servers
	$(BIN)/python scripts/demo.py --config-file $(CONF) --auth $(AUTH) --search $(SEARCH)

# Debian packages the tests use as peers, installed by servers.py in its one apt
# transaction (it keeps their system services from starting): Chromium (Playwright
# drives it and never downloads one), rsyslog with TLS (each syslog test starts its
# own rsyslogd: devtools/rsyslog.py), Prometheus (the dashboard test
# starts its own: tests/functional/test_grafana_dashboard.py), HAProxy (the
# failover test starts its own: devtools/haproxy.py).
TEST_PACKAGES := chromium rsyslog rsyslog-gnutls prometheus haproxy

test-servers:
	$(PYTHON) scripts/servers.py up --packages $(TEST_PACKAGES)

# The virtualenv and the servers at once: both mostly wait on downloads and start-ups.
test-ready:
	@$(MAKE) -j2 --no-print-directory $(VENV)/.installed test-servers

# Tests run in parallel, each pytest-xdist worker a run of its own (RabbitMQ vhost,
# index and Zaqar prefixes: tests/conftest.py). Four workers on two cores: the
# functional tests mostly wait on the servers and on the processes they start.
# Work stealing: test durations run from milliseconds to 20 s, and xdist's default
# (fixed shares handed out up front) left workers idle behind the long ones
# (the whole suite took 341 s that way, 196 s stealing, on the same machine).
PYTEST := $(BIN)/pytest -q -n 4 --dist worksteal

# The layers (.importlinter): the core below the ways out, the ways out in layers,
# the pure parts without I/O, test tooling outside the packages.
lint-imports: $(VENV)/.installed
	$(BIN)/lint-imports

test: test-ready
	$(MAKE) --no-print-directory lint-imports
	$(PYTEST) tests horizon-plugin/tests
	$(MAKE) --no-print-directory test-opensearch

# The subset above on OpenSearch (SF_SEARCH_BACKEND: tests/conftest.py).
test-opensearch: $(VENV)/.installed servers
	SF_SEARCH_BACKEND=opensearch $(PYTEST) $(OPENSEARCH_TESTS)

# The same suite by kind (markers): pure logic, real servers, Chromium.
unit: $(VENV)/.installed
	$(BIN)/pytest -q -m unit tests

functional: test-ready
	$(PYTEST) -m functional tests

browser-tests: test-ready
	$(PYTEST) -m browser tests

sample-config: $(VENV)/.installed
	$(BIN)/oslo-config-generator --config-file etc/oslo-config-generator/searchlight-forward.conf
	$(BIN)/oslopolicy-sample-generator --config-file etc/oslo-policy-generator/searchlight-forward.conf

# Throughput, delay, memory and scaling on the local servers (docs/benchmarks.md);
# make bench SEARCH=opensearch: on OpenSearch.
bench: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/run.py

# Webhook deliveries per core, delay with 100 subscriptions, 1,000 idle subscriptions
# (docs/benchmarks.md, "Subscriptions"): about 6 minutes.
bench-subscriptions: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/subscriptions.py

# 1,000 WebSocket connections with distinct live search queries at 200
# notifications/s, against as many plain subscriptions (docs/benchmarks.md, "Live
# search"): about 2 minutes.
bench-livesearch: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/livesearch.py

# Publish-to-row-updated in Horizon's live table in headless Chromium at 50 and 200
# changes/s, and the long tasks of a 2,000-row table taking 200 changes/s
# (docs/benchmarks.md, "Horizon live table"): about 2 minutes.
bench-horizon: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/horizon.py

# Searchlight's POST /v1/search through the API against the same query sent straight
# to Elasticsearch, at 1 and 8 concurrent clients (docs/benchmarks.md, "Searchlight's
# search through the API"): about 2 minutes.
bench-search: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/search_latency.py

# Ten thousand WebSocket connections to one server process, then two servers behind
# HAProxy with one killed (docs/benchmarks.md, "Ten thousand connections (issue 28)"
# and "WebSocket failover behind HAProxy"): about 3 minutes. Then the delivery
# service with 10,000 idle subscriptions, and 10,000 subscriptions over 1,000
# projects at 100 notifications/s (bench/subscriptions.py: idle and spread, written
# to bench/results/subscriptions.json/.md; --drain 600 so that a slow delivery is
# reported as slow, not as missing).
bench-scale: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/scale.py
	$(BIN)/python bench/haproxy_failover.py
	SF_SEARCH_BACKEND=$(SEARCH) $(BIN)/python bench/subscriptions.py --only idle,spread --subscriptions-idle 10000 --drain 600 --results-name subscriptions-scale

# Faults injected into the running services, and a table of what was lost
# (docs/reliability.md). Apart from `make test`: about 20 minutes.
faults: $(VENV)/.installed servers
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/faults.py
