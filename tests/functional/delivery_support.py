"""What the delivery tests share: pipelines files, waiting for cursors to reach the
end of the log, reading Zaqar queues and logger lines back."""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from forwarders.filters.base import Filter
from forwarders.sinks.base import Sink
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import ChangeLog, NoIndex
from searchlight_forward.retry import TransientError
from tests.conftest import ZAQAR_URL, zaqar_client_for


class ExplodingFilter(Filter):
    """A third-party filter with a bug: it raises on every document."""

    def apply(self, resource_type, document):
        raise RuntimeError("this filter always fails")


class CrashingSink(Sink):
    """A third-party sink with a bug: its first ``crashes`` calls raise what no sink
    classifies (neither rejected nor unavailable), then it works. Process-wide state:
    the delivery service runs in the test's process."""
    default_policy = "hold"
    call_timeout = 1.0
    crashes = 2
    calls = 0
    received: list = []
    lock = threading.Lock()

    def deliver(self, envelopes) -> None:
        with CrashingSink.lock:
            CrashingSink.calls += 1
            if CrashingSink.calls <= CrashingSink.crashes:
                raise KeyError("a bug in the sink")
            CrashingSink.received += [e.to_dict() for e in envelopes]


#: one pipeline, ``audit``, to the logger sink (ChangeLines collects its lines)
AUDIT_PIPELINE = """
[forwarding]
pipelines = audit

[pipeline:audit]
pipeline = logger

[sink:logger]
use = egg:searchlight-forward#logger
"""


def pipelines_ini(zaqar_project: str, queue: str, tenant_prefix: str,
                  ops_url: str = ZAQAR_URL, ops_policy: str = "hold",
                  extra_pipelines: str = "", extra_sections: str = "") -> str:
    """Three ways out: each tenant's queue (redacted), the operator's queue (all),
    and a logger."""
    return f"""
[forwarding]
pipelines = tenants ops audit {extra_pipelines}

[pipeline:tenants]
pipeline = admin_only secrets tenant_zaqar

[pipeline:ops]
pipeline = ops_zaqar

[pipeline:audit]
pipeline = logger

[filter:admin_only]
use = egg:searchlight-forward#admin_only_fields

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = (?i)mac_addr, (?i)fingerprint, ^OS-EXT-IPS

[sink:tenant_zaqar]
use = egg:searchlight-forward#zaqar
url = {ZAQAR_URL}
queue = {queue}
project = {tenant_prefix}-{{project_id}}
on_failure = retry
timeout = 1

[sink:ops_zaqar]
use = egg:searchlight-forward#zaqar
url = {ops_url}
queue = {queue}
project = {zaqar_project}
on_failure = {ops_policy}
timeout = 1
backoff = 0.2
max_backoff = 1

[sink:logger]
use = egg:searchlight-forward#logger
fields = resource_type, id, project_id, version, operation, event_type, document.name
{extra_sections}
"""


def head_of(es, group: str) -> Position | None:
    try:
        return ChangeLog(es, group).head().position
    except (NoIndex, TransientError):      # no index, or not every shard started yet
        return None


def cursor_positions(es, state_index: str, group: str) -> dict[str, Position | None]:
    """Every durable cursor of ``group``: consumer name -> position."""
    es.indices.refresh(index=state_index)
    resp = es.search(index=state_index, size=1000, query={"bool": {"filter": [
        {"term": {"kind": "cursor"}}, {"term": {"group": group}}]}})
    return {h["_source"]["consumer"]: Position.from_dict(h["_source"].get("position"))
            for h in resp["hits"]["hits"]}


def wait_caught_up(es, state_index: str, group: str, consumers, timeout: float = 120):
    """Wait until the named consumers' durable cursors include the end of the log."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        head = head_of(es, group)
        last = cursor_positions(es, state_index, group)
        if head is not None and all(last.get(c) is not None and last[c].includes(head)
                                    for c in consumers):
            return last
        time.sleep(0.3)
    pytest.fail(f"cursors did not reach the end of the log ({head_of(es, group)}) in "
                f"{timeout}s: {last}")


def drain(project: str, queue_name: str) -> list[dict]:
    """Every message of a Zaqar queue, oldest first, deleting them as they come; stops
    at the first empty pop (call once delivery is known to be complete)."""
    queue = zaqar_client_for(project).queue(queue_name)
    got = []
    while True:
        batch = list(queue.pop(20))
        if not batch:
            return got
        got.extend(m.body for m in batch)


class ChangeLines(logging.Handler):
    """Collects the logger sink's lines in this process (``change {...}``)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[dict] = []
        self._lock = threading.Lock()

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("change "):
            with self._lock:
                self.lines.append(json.loads(message[len("change "):]))

    def __enter__(self):
        logger = logging.getLogger("searchlight_forward.changes")
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        logging.getLogger("searchlight_forward.changes").removeHandler(self)


def log_lines(path) -> list[dict]:
    """The logger sink's lines in a process's log file."""
    found = []
    with open(path, errors="replace") as f:
        for line in f:
            marker = line.find(" change {")
            if marker >= 0:
                found.append(json.loads(line[marker + len(" change "):]))
    return found
