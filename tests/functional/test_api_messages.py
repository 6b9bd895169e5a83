"""What the subscriptions API tells a tenant, word for word, on a real API behind the
real Keystone: a missing endpoint is "required", a refused address is named once, and
feed errors have the API's documented shape (code, title, message)."""
from __future__ import annotations

import uuid

import pytest
import requests

from tests.functional.subscriptions_support import started_apis

ALLOW = "an operator may allow it in [subscriptions] allowed_networks"


@pytest.fixture
def api(config_file, names, keystone, es):
    yield from started_apis(config_file, names, keystone, es)


def refused(api, token, body) -> dict:
    resp = api.call("POST", "/v1/subscriptions", token, body)
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]


def test_a_missing_endpoint_is_required_and_a_refused_address_is_named_once(
        api, keystone):
    server = api()
    member = keystone.token("demo")
    assert refused(server, member, {"protocol": "webhook"}) == {
        "code": 400, "title": "Bad Request", "field": "endpoint",
        "message": "required: the webhook subscription's URL"}
    assert refused(server, member, {"protocol": "email"}) == {
        "code": 400, "title": "Bad Request", "field": "endpoint",
        "message": "required: the email subscription's address"}
    # Not in the tests' allowed_networks (127.0.0.1/32):
    assert refused(server, member, {"protocol": "webhook",
                                    "endpoint": "http://127.0.0.2:9/hook"}) == {
        "code": 400, "title": "Bad Request", "field": "endpoint",
        "message": f"endpoint refused: 127.0.0.2 is a loopback address; {ALLOW}"}
    assert refused(server, member, {"protocol": "webhook",
                                    "endpoint": "http://[::1]:9/hook"})["message"] == \
        f"endpoint refused: ::1 is a loopback address; {ALLOW}"


def test_feed_errors_have_the_apis_error_shape(api, keystone):
    server = api()
    missing = requests.get(f"{server.url}/v1/feeds/{uuid.uuid4()}/not-a-token", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"error": {
        "code": 404, "title": "Not Found",
        "message": "no such feed: the URL is wrong, or was revoked (its subscription "
                   "deleted or its secret rotated)"}}
    anonymous = requests.get(f"{server.url}/v1/feeds", timeout=10,
                             params={"resource_type": "OS::Nova::Server"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["title"] == "Unauthorized"
    wrong = requests.post(f"{server.url}/v1/feeds", timeout=10,
                          headers={"X-Auth-Token": keystone.token("demo")})
    assert wrong.status_code == 405
    assert wrong.json() == {"error": {"code": 405, "title": "Method Not Allowed",
                                      "message": "use GET"}}
