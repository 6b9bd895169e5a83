"""Logger sink: one structured line per change through oslo.log."""
from __future__ import annotations

import json
import logging

from forwarders.filters.fields import split_list
from forwarders.sinks import Sink, SinkConfigError

LOG = logging.getLogger("searchlight_forward.changes")

DEFAULT_FIELDS = "resource_type, id, project_id, version, operation, event_type"


class LoggerSink(Sink):
    """Options: ``level`` (DEBUG..CRITICAL, default INFO) and ``fields``: envelope
    fields and ``document.<path>`` values to put on the line."""

    default_policy = "drop"

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        level = options.get("level", "INFO").upper()
        if not isinstance(logging.getLevelName(level), int):
            raise SinkConfigError(f"level: {level!r} is not a log level")
        self.level = logging.getLevelName(level)
        self.fields = split_list(options.get("fields", DEFAULT_FIELDS))
        if not self.fields:
            raise SinkConfigError("fields: name at least one field")

    def deliver(self, envelopes) -> None:
        if not LOG.isEnabledFor(self.level):
            return
        for envelope in envelopes:
            data = envelope.to_dict()
            line = {field: _lookup(data, field) for field in self.fields}
            LOG.log(self.level, "change %s", json.dumps(line, sort_keys=False, default=str))


def _lookup(data, path: str):
    node = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
