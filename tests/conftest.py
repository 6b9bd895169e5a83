"""Shared test settings: where the local servers are (scripts/servers.py env)."""
import os
import signal
import uuid

import pytest

ES_URL = os.environ.get("SF_ES_URL", "http://127.0.0.1:9200")
TRANSPORT_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
ZAQAR_URL = os.environ.get("SF_ZAQAR_URL", "http://127.0.0.1:8888")
# The same broker as kombu spells it (oslo.messaging says rabbit://, kombu amqp://).
AMQP_URL = TRANSPORT_URL.replace("rabbit://", "amqp://", 1)


def field_paths(node, prefix=""):
    """Every dotted field path of a document, through lists of objects (no indices)."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from field_paths(value, path)
    elif isinstance(node, list):
        for item in node:
            yield from field_paths(item, prefix)


def zaqar_client_for(project: str):
    """A plain python-zaqarclient client on the no-auth local Zaqar, as a consumer
    would build it."""
    from zaqarclient.queues.v2 import client as zaqar_client
    return zaqar_client.Client(ZAQAR_URL, version=2, conf={
        "auth_opts": {"backend": "noauth", "options": {"project_id": project}},
        "client_uuid": str(uuid.uuid4())})


def time_limit_fixture(seconds: int):
    """An autouse fixture failing any test of the module that outlives ``seconds``
    (SIGALRM; no pytest-timeout needed)."""
    @pytest.fixture(autouse=True)
    def limit():
        def expired(signum, frame):
            pytest.fail(f"the test took more than {seconds}s")
        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(seconds)
        yield
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return limit
