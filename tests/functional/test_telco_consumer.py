"""searchlight-forward-telco-consumer against the real Zaqar on 127.0.0.1.

Envelopes are posted with python-zaqarclient into a queue of a project of the test's
own (random names; the queue is deleted afterwards), then drained by the consumer:
in a subprocess (``python -m telco_consumer.consumer --once``)
or in-process (``main([...])``).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests
from zaqarclient.queues.v2 import claim as zaqar_claim
from zaqarclient.queues.v2 import queues as zaqar_queues

from telco_consumer import state as telco
from telco_consumer import consumer as telco_consumer
from tests.conftest import ZAQAR_URL, zaqar_client_for, zaqar_project

TEST_SECONDS = 90     # every test is killed after this
RUN_SECONDS = 60      # one consumer run

V = 1772452807000000270          # 2026-03-02 12:00:07 UTC
PROJECT_ID = "6f70a1b2c3d4e5f6a7b8c9d0e1f2a3b4"


pytestmark = pytest.mark.timeout(TEST_SECONDS)


def client(project: str):
    return zaqar_client_for(project)


@pytest.fixture
def where(tmp_path):
    """A fresh (project, queue, state file); the queue is deleted afterwards."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": zaqar_project("ping")}
    try:
        requests.get(f"{ZAQAR_URL}/v2/ping", headers=headers, timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001 - the message says what to do
        pytest.fail(f"Zaqar is not reachable at {ZAQAR_URL} ({exc}); start it: "
                    "python3 scripts/servers.py up zaqar")
    suffix = uuid.uuid4().hex[:10]
    project, queue = zaqar_project(f"telco-{suffix}"), f"telco-{suffix}"
    yield project, queue, str(tmp_path / "telco-state.json")
    try:
        client(project).queue(queue, auto_create=False).delete()
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


def envelope(rid: str, version: int, operation: str = "index", **document) -> dict:
    return {"resource_type": "OS::Nova::Server", "id": rid, "project_id": PROJECT_ID,
            "version": version, "operation": operation, "event_type": "instance.update",
            "timestamp": "2026-03-02 12:00:07.270156",
            "document": None if operation == "delete"
            else {"id": rid, "name": f"vm-{rid}", "status": "ACTIVE", **document}}


def post(project: str, queue: str, bodies: list) -> list[str]:
    """Post in order (posts of 100); the new message ids, in order."""
    q = client(project).queue(queue)
    ids = []
    for i in range(0, len(bodies), 100):
        answer = q.post([{"ttl": 3600, "body": b} for b in bodies[i:i + 100]])
        ids += [href.rsplit("/", 1)[1] for href in answer["resources"]]
    return ids


def stats(project: str, queue: str) -> dict:
    return client(project).queue(queue, auto_create=False).stats["messages"]


def consume(project, queue, state_file, *extra, once=True):
    """The consumer in a subprocess, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "telco_consumer.consumer",
         "--zaqar-url", ZAQAR_URL, "--project", project, "--queue", queue,
         "--state-file", state_file, *(["--once"] if once else []), *extra],
        capture_output=True, text=True, timeout=RUN_SECONDS)


def line(rid: str, version: int, operation: str = "index", name: str | None = None,
         status: str = "ACTIVE") -> str:
    name = name or f"vm-{rid}"
    if operation == "delete":
        return (f"12:00:07 DELETE OS::Nova::Server {name} ({rid}) project 6f70a1b2… "
                f"v{version}")
    return (f"12:00:07 UPDATE OS::Nova::Server {name} ({rid}) project 6f70a1b2… "
            f"status {status} v{version}")


def saved_versions(state_file: str) -> dict[str, int]:
    return telco.load_state(state_file).versions()


# ---------------------------------------------------------------------------------

def test_each_version_is_applied_once_in_order_and_the_queue_is_emptied(where):
    project, queue, state_file = where
    filler = [envelope(f"f{i:02d}", V + i) for i in range(35)]
    bodies = [
        envelope("a", V + 1),
        envelope("b", V + 1),
        envelope("a", V + 2, status="SHUTOFF"),
        *filler[:20],                                # what follows is in later claims
        envelope("a", V + 2, status="SHUTOFF"),      # duplicate (post retried)
        envelope("a", V + 1),                        # older after newer: stale
        "not an envelope",                           # malformed
        *filler[20:],
        {"id": "c", "version": V},                   # malformed: no operation ...
        envelope("b", V + 3, "delete"),
        envelope("b", V + 2),                        # a late index after the delete
        envelope("c", V + 5, status="ERROR"),
    ]
    ids = post(project, queue, bodies)
    assert len(bodies) > 2 * telco_consumer.MAX_PER_CLAIM       # at least 3 claims

    run = consume(project, queue, state_file)

    assert run.returncode == 0, run.stderr
    expected = [line("a", V + 1), line("b", V + 1), line("a", V + 2, status="SHUTOFF"),
                *[line(f"f{i:02d}", V + i) for i in range(35)],
                line("b", V + 3, "delete", name="vm-b"), line("c", V + 5, status="ERROR")]
    assert run.stdout.splitlines() == expected
    for malformed in (ids[25], ids[-4]):
        assert f"WARNING malformed message {malformed} in {project}/{queue}" in run.stderr
    assert "body is \"not an envelope\", not an envelope object" in run.stderr
    assert f"{len(bodies)} messages in" in run.stderr
    assert f"{len(expected)} applied, 1 duplicate, 2 stale, 2 malformed" in run.stderr

    state = telco.load_state(state_file)
    assert state.versions() == {"a": V + 2, "b": V + 3, "c": V + 5,
                                **{f"f{i:02d}": V + i for i in range(35)}}
    assert state.resources["b"]["deleted"] is True
    assert state.resources["a"]["status"] == "SHUTOFF"
    assert stats(project, queue)["total"] == 0

    # Again: nothing new to apply; then older and equal versions plus one newer.
    again = consume(project, queue, state_file)
    assert again.returncode == 0 and again.stdout == ""
    assert "0 messages in" in again.stderr
    post(project, queue, [envelope("a", V + 1), envelope("c", V + 5),
                          envelope("b", V + 4), envelope("a", V + 9)])
    later = consume(project, queue, state_file)
    assert later.stdout.splitlines() == [line("b", V + 4), line("a", V + 9)]
    assert saved_versions(state_file)["b"] == V + 4          # re-created after delete
    assert stats(project, queue)["total"] == 0


def test_a_crash_between_apply_and_delete_applies_nothing_twice(where):
    """SIGKILL after the first batch is saved and printed, before its delete: the
    messages come back (here at once: the test releases the dead consumer's claim,
    as Zaqar does when the claim's TTL runs out) and are skipped as duplicates."""
    project, queue, state_file = where
    bodies = [envelope(f"r{i:02d}", V + i) for i in range(30)]
    ids = post(project, queue, bodies)

    crashed = consume(project, queue, state_file, "--crash-before-delete")

    assert crashed.returncode == -signal.SIGKILL
    first = [line(f"r{i:02d}", V + i) for i in range(20)]
    assert crashed.stdout.splitlines() == first
    assert saved_versions(state_file) == {f"r{i:02d}": V + i for i in range(20)}
    q = client(project).queue(queue, auto_create=False)
    left = stats(project, queue)
    assert (left["claimed"], left["free"]) == (20, 10)
    claim_ids = {m.claim_id for m in q.messages(*ids[:20])}
    assert len(claim_ids) == 1 and None not in claim_ids
    zaqar_claim.Claim(q, id=claim_ids.pop()).delete()       # = the claim expiring

    after = consume(project, queue, state_file)

    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [line(f"r{i:02d}", V + i) for i in range(20, 30)]
    assert "30 messages in" in after.stderr and "10 applied, 20 duplicate" in after.stderr
    assert saved_versions(state_file) == {f"r{i:02d}": V + i for i in range(30)}
    assert stats(project, queue)["total"] == 0


def test_in_process_and_delete_each(where, capsys):
    project, queue, state_file = where
    post(project, queue, [envelope("x", V), envelope("x", V), {"id": 1}])
    code = telco_consumer.main(["--zaqar-url", ZAQAR_URL, "--project", project,
                                "--queue", queue, "--state-file", state_file, "--once",
                                "--delete", "each", "--batch", "2"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines() == [line("x", V)]
    assert "1 applied, 1 duplicate, 0 stale, 1 malformed" in err
    assert saved_versions(state_file) == {"x": V}
    assert stats(project, queue)["total"] == 0


def test_a_failed_delete_is_retried_before_claiming_more(where, capsys, monkeypatch):
    """Zaqar failing just after a batch is saved: the batch stays claimed and its
    delete is retried, so --once still leaves the queue empty."""
    project, queue, state_file = where
    post(project, queue, [envelope(f"r{i:02d}", V + i) for i in range(30)])
    monkeypatch.setattr(telco_consumer, "ERROR_BACKOFF", (0.01, 0.05))
    real, calls = zaqar_queues.Queue.delete_messages, []

    def flaky(self, *ids):
        calls.append(len(ids))
        if len(calls) <= 2:
            raise requests.ConnectionError("connection reset by peer")
        return real(self, *ids)
    monkeypatch.setattr(zaqar_queues.Queue, "delete_messages", flaky)

    code = telco_consumer.main(["--zaqar-url", ZAQAR_URL, "--project", project,
                                "--queue", queue, "--state-file", state_file, "--once"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [line(f"r{i:02d}", V + i) for i in range(30)]
    assert calls == [20, 20, 20, 10]
    assert err.count("ERROR cannot delete messages") == 2
    assert "the batch is applied and saved; its delete is retried" in err
    assert "answers again" in err
    assert "30 messages in" in err and "30 applied, 0 duplicate" in err
    assert stats(project, queue)["total"] == 0


def test_ctrl_c_stops_cleanly(where):
    project, queue, state_file = where
    proc = subprocess.Popen(
        [sys.executable, "-m", "telco_consumer.consumer",
         "--zaqar-url", ZAQAR_URL, "--project", project, "--queue", queue,
         "--state-file", state_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        post(project, queue, [envelope(f"r{i}", V + i) for i in range(45)])
        deadline = time.monotonic() + 20
        while stats(project, queue)["total"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats(project, queue)["total"] == 0, "the consumer did not drain the queue"
        post(project, queue, [envelope("r0", V + 100)])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.splitlines()[:45] == [line(f"r{i}", V + i) for i in range(45)]
    # stopped mid-batch or between batches: whatever it did not delete is still there
    # (and not claimed), and whatever it printed is saved
    applied = len(out.splitlines()) - 45
    assert saved_versions(state_file)["r0"] == (V + 100 if applied else V)
    assert stats(project, queue)["claimed"] == 0
    assert stats(project, queue)["total"] == 1 - applied


def test_zaqar_unreachable_is_a_clear_error_retried_with_backoff(tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setattr(telco_consumer, "ERROR_BACKOFF", (0.01, 0.05))
    code = telco_consumer.main(["--zaqar-url", f"http://127.0.0.1:{closed_port()}",
                                "--project", "ops", "--once",
                                "--state-file", str(tmp_path / "s.json")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("ERROR cannot claim messages: Zaqar at http://127.0.0.1:") == \
        telco_consumer.ONCE_ATTEMPTS
    assert err.count("python3 scripts/servers.py status") == 1       # hint once
    assert "retrying in" in err and "giving up after 5 attempts" in err
    assert "Traceback" not in err


def test_one_consumer_per_state_file(tmp_path, capsys):
    state_file = str(tmp_path / "s.json")
    fd = os.open(state_file + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = telco_consumer.main(["--project", "ops", "--once",
                                    "--state-file", state_file])
    finally:
        os.close(fd)
    assert code == 2
    assert f"another consumer is using {state_file}" in capsys.readouterr().err


def test_an_unusable_state_file_stops_before_claiming(where, capsys):
    project, queue, state_file = where
    post(project, queue, [envelope("x", V)])
    with open(state_file, "w") as f:
        json.dump({"format": 99}, f)
    code = telco_consumer.main(["--zaqar-url", ZAQAR_URL, "--project", project,
                                "--queue", queue, "--state-file", state_file, "--once"])
    assert code == 2
    assert "is not usable" in capsys.readouterr().err
    left = stats(project, queue)
    assert (left["total"], left["claimed"]) == (1, 0)


def test_drains_2000_envelopes(where):
    project, queue, state_file = where
    bodies = [envelope(f"r{i % 500:03d}", V + i, pad="x" * 1200) for i in range(2000)]
    post(project, queue, bodies)
    started = time.monotonic()
    run = consume(project, queue, state_file)
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2000
    assert "2000 applied, 0 duplicate, 0 stale" in run.stderr, run.stderr
    assert saved_versions(state_file) == {f"r{i:03d}": V + 1500 + i for i in range(500)}
    assert stats(project, queue)["total"] == 0
    print(f"\ndrained 2000 envelopes in {seconds:.1f} s "
          f"({2000 / seconds:.0f} messages/s, process start included)")


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
