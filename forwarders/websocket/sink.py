"""The ``websocket`` sink: it marks the pipeline the WebSocket server serves.

WebSocket clients are served by ``searchlight-forward-websocket``, which reads the
change log itself and applies, per connection, the role copy, the project and this
pipeline's filters and ``resource_types``. The delivery service skips such a
pipeline. The server's own settings (address, port, token validation, limits) are
options of ``[websocket]`` in the main configuration, their one source of truth::

    [pipeline:horizon]
    pipeline = unsearchable secrets websocket

    [sink:websocket]
    use = egg:searchlight-forward#websocket
"""
from __future__ import annotations

from forwarders.sinks.base import POLICY_OPTIONS, Sink, SinkConfigError


class WebSocketSink(Sink):
    default_policy = "drop"
    served_by_websocket = True

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        endpoint = sorted(set(self.options) - POLICY_OPTIONS)
        if endpoint:
            raise SinkConfigError(
                endpoint[0], "the WebSocket server's settings are options of "
                "[websocket] in the main configuration (searchlight-forward.conf); "
                f"move {', '.join(endpoint)} there")

    def deliver(self, envelopes) -> None:
        raise RuntimeError("the websocket pipeline is served by searchlight-forward-"
                           "websocket, not delivered")
