"""Logger sink: one structured line per change through oslo.log."""
from __future__ import annotations

import json
import logging

import orjson

from forwarders.sinks.base import Sink, SinkConfigError

LOG = logging.getLogger("searchlight_forward.changes")

DEFAULT_FIELDS = ["resource_type", "id", "project_id", "version", "operation",
                  "event_type", "priority"]


class LoggerSink(Sink):
    """Options: ``level`` (DEBUG..CRITICAL, default INFO) and ``fields``: envelope
    fields and ``document.<path>`` values to put on the line."""

    default_policy = "drop"
    call_timeout = 1.0

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        level = self.options.get("level", "INFO").strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise SinkConfigError("level", f"{level!r} is not a log level")
        self.level = logging.getLevelName(level)
        self.fields = self.options.listing("fields", DEFAULT_FIELDS)
        if not self.fields:
            raise SinkConfigError("fields", "name at least one field")

    def deliver(self, envelopes) -> None:
        if not LOG.isEnabledFor(self.level):
            return
        for envelope in envelopes:
            data = envelope.to_dict()
            line = {field: _lookup(data, field) for field in self.fields}
            try:
                text = orjson.dumps(line, default=str).decode()
            except TypeError:
                text = json.dumps(line, default=str)
            LOG.log(self.level, "change %s", text)


def _lookup(data, path: str):
    node = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
