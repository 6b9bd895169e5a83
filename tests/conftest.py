"""Shared test settings: where the local servers are, and this run's private names.

Every test run gets its own RabbitMQ virtual host, index prefix and Zaqar project
prefix (``RUN``), so a running ``make demo`` and the suite never see each other's
notifications, rings, indices or queues, and two runs never either. Each
pytest-xdist worker imports this module itself, so each worker is a run of its own.
"""
import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = f"sft-{uuid.uuid4().hex[:6]}"

# The search server: SF_SEARCH_BACKEND=opensearch runs the functional tests on
# OpenSearch (scripts/servers.py starts it on 9201) instead of Elasticsearch.
SEARCH_BACKEND = os.environ.get("SF_SEARCH_BACKEND", "elasticsearch")
ES_URL = os.environ.get("SF_SEARCH_URL") or (
    os.environ.get("SF_OPENSEARCH_URL", "http://127.0.0.1:9201")
    if SEARCH_BACKEND == "opensearch" else os.environ.get("SF_ES_URL", "http://127.0.0.1:9200"))
BROKER_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
VHOST = RUN
TRANSPORT_URL = f"{BROKER_URL.rstrip('/')}/{VHOST}"
ZAQAR_URL = os.environ.get("SF_ZAQAR_URL", "http://127.0.0.1:8888")
# The same broker as kombu spells it (oslo.messaging says rabbit://, kombu amqp://).
AMQP_URL = TRANSPORT_URL.replace("rabbit://", "amqp://", 1)

START_HINT = "start the local servers first: python3 scripts/servers.py up"


def pytest_report_header():
    return f"search server: {SEARCH_BACKEND} at {ES_URL}"


def pytest_collection_modifyitems(items):
    """Markers by folder: unit (pure), functional (real servers), browser."""
    for item in items:
        parts = item.nodeid.split("/")
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in ("unit", "functional",
                                                                   "browser"):
            item.add_marker(getattr(pytest.mark, parts[1]))


def rabbitmqctl(*args: str) -> None:
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "servers.py"),
                    "rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def vhost():
    """This run's RabbitMQ virtual host, deleted at the end."""
    try:
        rabbitmqctl("add_vhost", VHOST)
        rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.fail(f"cannot create the RabbitMQ virtual host {VHOST} ({exc}); {START_HINT}")
    yield VHOST
    try:
        rabbitmqctl("delete_vhost", VHOST)
    except (subprocess.SubprocessError, OSError):
        pass


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


def zaqar_project(name: str) -> str:
    """A Zaqar project private to this run."""
    return f"{RUN}-{name}"
