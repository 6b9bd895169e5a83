"""The subscriptions API's operator endpoints, on a real searchlight-forward-api
command behind the real Keystone: /metrics (parsed by prometheus_client's own parser),
/status, /healthz and /readyz answer without a token, as every other process's do;
/readyz turns 503 while Elasticsearch is away and 200 after."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.faultproxy import FaultProxy
from tests.conftest import ES_URL
from tests.functional.conftest import wait_for
from tests.functional.subscriptions_support import api_command, started_apis

KNOWN_CODES = ("200", "201", "204", "400", "401", "403", "404", "405", "408", "409",
               "410", "411", "413", "415", "500", "503")


@pytest.fixture
def stack(config_file, names, keystone, es):
    yield from started_apis(config_file, names, keystone, es)


@pytest.fixture
def es_proxy():
    host, port = ES_URL.split("//")[1].split(":")
    proxy = FaultProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


def get(url: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) with no token."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(url: str) -> dict[tuple, float]:
    status, kind, text = get(url + "/metrics")
    assert status == 200 and kind.startswith("text/plain; version="), (status, kind)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def answers(scraped: dict, code: str) -> float:
    return scraped[("searchlight_forward_api_responses_total", (("code", code),))]


def test_the_api_serves_metrics_status_and_health_without_a_token(
        stack, config_file, processes, keystone):
    url = api_command(stack, config_file, processes)
    fresh = scrape(url)
    # Every status code the API answers is there at 0 before it is first answered.
    assert {code: answers(fresh, code) for code in KNOWN_CODES} == dict.fromkeys(
        KNOWN_CODES, 0)
    member = keystone.token("demo-reader")
    assert requests.get(url + "/v1/subscriptions", timeout=10).status_code == 401
    assert requests.get(url + "/v1/subscriptions", timeout=10).status_code == 401
    assert requests.get(url + "/v1/subscriptions", timeout=10,
                        headers={"X-Auth-Token": member}).status_code == 200
    assert requests.get(url + "/v1/nothing-here", timeout=10,
                        headers={"X-Auth-Token": member}).status_code == 404
    scraped = scrape(url)
    # The operator endpoints themselves are not counted.
    assert {code: answers(scraped, code) for code in ("200", "401", "404", "500")} == {
        "200": 1, "401": 2, "404": 1, "500": 0}
    assert scraped[("searchlight_forward_api_request_seconds_count", ())] == 4
    assert scraped[("searchlight_forward_api_refused_connections_total", ())] == 0
    assert scraped[("searchlight_forward_api_open_connections", ())] == 1   # this one

    status, kind, body = get(url + "/status")
    assert (status, kind) == (200, "application/json")
    api = requests.get(url + "/status", timeout=10).json()["api"]
    assert api["requests"] == 4
    assert api["responses"] == {"200": 1, "401": 2, "404": 1}
    assert api["connections"] == {"open": 1, "refused": 0}
    for path in ("/healthz", "/readyz"):
        status, kind, body = get(url + path)
        assert (status, kind) == (200, "application/json"), path
        assert requests.get(url + path, timeout=10).json() == {"status": "ok",
                                                               "problems": []}


def test_the_api_is_not_ready_while_elasticsearch_is_away(
        stack, config_file, processes, es_proxy):
    url = api_command(stack, config_file, processes, es_url=es_proxy.url)
    assert get(url + "/readyz")[0] == 200
    es_proxy.block()
    wait_for(lambda: get(url + "/readyz")[0] == 503, 30, "readiness to fail")
    status, kind, body = get(url + "/readyz")
    assert kind == "application/json"
    problems = requests.get(url + "/readyz", timeout=10).json()["problems"]
    assert len(problems) == 1 and problems[0].startswith("Elasticsearch: "), problems
    assert get(url + "/healthz")[0] == 200          # alive: do not restart it
    es_proxy.unblock()
    wait_for(lambda: get(url + "/readyz")[0] == 200, 30, "readiness to return")
