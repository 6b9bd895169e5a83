"""Shared test settings: where the local servers are (scripts/servers.py env)."""
import os

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
