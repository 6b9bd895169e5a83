"""Hostile clients of the subscriptions API, on the real servers and the local
Keystone (keystonemiddleware's auth_token validating real tokens): bodies too large
or nested too deeply, bodies that are not objects, a client sending its headers a
byte at a time (slowloris), more connections than the server serves at once, and a
flood of concurrent creates from one project. Each is refused with a clear 4xx/503,
in bounded time, and a member's ordinary calls keep working (bench/faults.py
``hostile_api`` runs the same attacks, and more, against the real process)."""
from __future__ import annotations

import concurrent.futures
import json
import socket
import time
import uuid

import pytest
import requests

from tests.functional.raw_http import exchange, status_of
from tests.functional.subscriptions_support import started_apis


@pytest.fixture
def api_with(config_file, names, keystone, es):
    """api_with(**[subscriptions] options) -> the API in this process."""
    yield from started_apis(config_file, names, keystone, es)


def test_a_50_mb_body_is_refused_413_before_it_is_read(api_with, keystone):
    api = api_with()
    member = keystone.token("demo")
    port = int(api.url.rsplit(":", 1)[1])
    size = 50 * 2 ** 20
    head = (f"POST /v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Auth-Token: {member}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    answer, seconds = exchange(port, head, body_size=size)
    assert status_of(answer) == 413, answer[:300]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == 413 and "1048576" in error["message"], error
    assert seconds < 10
    # Within the limit, the same request is an ordinary one.
    ok = api.call("POST", "/v1/subscriptions", member, {"protocol": "webhook",
                                                          "endpoint": "http://127.0.0.1:9/h",
                                                          "name": "n" * 300})
    assert ok.status_code == 400 and ok.json()["error"]["field"] == "name"


def test_json_nested_too_deeply_or_not_an_object_is_a_400(api_with, keystone):
    api = api_with()
    member = keystone.token("demo")
    headers = {"X-Auth-Token": member, "Content-Type": "application/json"}
    for path in ("/v1/subscriptions", "/v1/search"):
        for body in (b"[" * 100_000, b'{"a":' * 50_000):
            resp = requests.post(api.url + path, data=body, headers=headers, timeout=30)
            assert resp.status_code == 400, (path, resp.status_code, resp.text[:200])
            assert "nested too deeply" in resp.json()["error"]["message"]
    # A rotation's body must be an object too (it was read with .get: a 500).
    rotate = f"/v1/subscriptions/{uuid.uuid4()}/secret/rotate"
    for body in (b"[]", b'"x"', b"1"):
        resp = requests.post(api.url + rotate, data=body, headers=headers, timeout=30)
        assert resp.status_code == 400, (body, resp.status_code, resp.text[:200])
        assert resp.json()["error"]["field"] == "body", resp.text
    assert api.call("GET", "/v1/subscriptions", member).status_code == 200


def test_a_slowloris_client_is_cut_off_and_others_are_served(api_with, keystone):
    api = api_with(api_client_timeout="2")
    member = keystone.token("demo")
    port = int(api.url.rsplit(":", 1)[1])
    head = (f"GET /v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Auth-Token: {member}\r\nX-Slow: {'s' * 100}\r\n\r\n").encode()
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        slow = [pool.submit(exchange, port, head, 0, 0.3, 15.0) for _ in range(5)]
        time.sleep(0.5)
        t0 = time.monotonic()
        assert api.call("GET", "/v1/subscriptions", member).status_code == 200
        assert time.monotonic() - t0 < 5
        for f in slow:
            answer, seconds = f.result(timeout=30)
            assert status_of(answer) == 408, answer[:200]
            assert seconds < 6, seconds
    # One that goes silent in the middle of its head is answered 408 too.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head[:40])
        t0 = time.monotonic()
        answer = sock.recv(65536)
    assert status_of(answer) == 408, answer[:200]
    assert time.monotonic() - t0 < 6


def error_of(answer: bytes) -> dict:
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)["error"]


def test_what_the_server_refuses_itself_has_the_apis_error_shape(api_with, keystone):
    """Heads too large, too many header fields, a bad Content-Length: refused by the
    HTTP server before the application, in the API's JSON error shape (was: the
    server's HTML page); a chunked body is read like any other (was: 411)."""
    api = api_with()
    member = keystone.token("demo")
    port = int(api.url.rsplit(":", 1)[1])
    token = f"X-Auth-Token: {member}\r\n"
    cases = [
        (414, f"GET /v1/subscriptions?a={'x' * 70_000} HTTP/1.1\r\nHost: x\r\n{token}\r\n"),
        (431, f"GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\n{token}"
              f"X-Big: {'y' * 70_000}\r\n\r\n"),
        (431, f"GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\n{token}"
              + "".join(f"X-H{i}: {i}\r\n" for i in range(300)) + "\r\n"),
        (400, f"POST /v1/subscriptions HTTP/1.1\r\nHost: x\r\n{token}"
              "Content-Length: -1\r\n\r\n"),
    ]
    for code, head in cases:
        answer, seconds = exchange(port, head.encode(), limit=10)
        assert status_of(answer) == code, (head[:60], answer[:300])
        error = error_of(answer)
        assert error["code"] == code and error["title"] and error["message"], error
        assert seconds < 5
    chunked = (f"POST /v1/subscriptions HTTP/1.1\r\nHost: x\r\n{token}"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               "Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode()
    answer, _ = exchange(port, chunked, limit=10)
    assert status_of(answer) == 400, answer[:300]
    assert error_of(answer)["field"] == "protocol"
    assert api.call("GET", "/v1/subscriptions", member).status_code == 200


def test_connections_beyond_the_cap_get_503_at_once(api_with, keystone):
    api = api_with(api_max_connections="3", api_client_timeout="5")
    member = keystone.token("demo")
    port = int(api.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.3)
        answer, seconds = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                   limit=4)
        assert status_of(answer) == 503, answer[:200]
        assert seconds < 1
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert api.call("GET", "/v1/subscriptions", member).status_code == 200
    # Clients that keep their connections open after an answer (keep-alive) do not
    # lock others out: the one idle longest is closed to make room.
    kept = [requests.Session() for _ in range(3)]
    try:
        for session in kept:
            assert session.get(api.url + "/healthz", timeout=10).status_code == 200
        assert api.call("GET", "/v1/subscriptions", member).status_code == 200
    finally:
        for session in kept:
            session.close()


def test_concurrent_creates_from_one_project_stay_within_the_cap(api_with, keystone):
    api = api_with(max_per_project="5")
    member = keystone.token("alt")

    def create(i):
        return api.call("POST", "/v1/subscriptions", member,
                        {"protocol": "webhook", "endpoint": "http://127.0.0.1:9/hook",
                         "name": f"flood {i}"}).status_code
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(create, range(40)))
    stored = api.call("GET", "/v1/subscriptions", member).json()["subscriptions"]
    assert set(statuses) <= {201, 409}, statuses
    assert len(stored) <= 5, (len(stored), statuses.count(201))
    assert len(stored) == statuses.count(201)
    # Sequentially, the cap is reached exactly.
    while len(api.call("GET", "/v1/subscriptions", member).json()["subscriptions"]) < 5:
        assert create(-1) == 201
    assert create(-2) == 409


def test_a_token_keystone_refused_is_not_sent_to_keystone_again(api_with, keystone,
                                                                monkeypatch):
    """keystonemiddleware caches valid tokens only: without the API's own memory of
    refused tokens, every request with a bad token is a Keystone call."""
    from keystonemiddleware.auth_token import _identity
    calls = []
    real = _identity.IdentityServer.verify_token

    def counted(self, token, *args, **kwargs):
        calls.append(token)
        return real(self, token, *args, **kwargs)
    monkeypatch.setattr(_identity.IdentityServer, "verify_token", counted)
    api = api_with()
    bad = [f"gAAAAA-not-a-token-{uuid.uuid4().hex}" for _ in range(3)]
    for token in bad * 10:
        assert api.call("GET", "/v1/subscriptions", token).status_code == 401
    assert sorted(calls) == sorted(bad)              # one Keystone call per token
    member = keystone.token("demo")
    assert api.call("GET", "/v1/subscriptions", member).status_code == 200
    assert api.call("GET", "/v1/subscriptions", member).status_code == 200
    assert calls.count(member) == 1                  # auth_token's own cache
