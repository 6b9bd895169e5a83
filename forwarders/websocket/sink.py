"""The WebSocket sink of the listener's pipelines: it rings the doorbell.

When a pipeline runs, its changes are already in Elasticsearch, which is where the
WebSocket servers read them (per connection: role copy, project, filters). So the
sink carries no documents; ``deliver`` only wakes the servers up. Its default
policy is ``drop``: a lost ring delays delivery by at most the servers'
``poll_interval``, it never loses a change.

A ``[sink:NAME]`` section describes the WebSocket endpoint as a whole; the server
reads the same options (``WebSocketOptions``), the sink validates them all and uses
none but ``groups``::

    [sink:browsers]
    use = egg:searchlight-forward#websocket
    host = 127.0.0.1
    port = 8765
    auth = token_file
    token_file = %(here)s/websocket-tokens.json
    queue_size = 1000
    poll_interval = 1.0
    admin_role = admin
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

from forwarders.envelope import Envelope
from forwarders.sinks import Sink, SinkConfigError, SinkUnavailable
from forwarders.websocket import auth
from forwarders.websocket.doorbell import ALL_GROUPS, Doorbell, DoorbellError

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WebSocketOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    auth: str = "token_file"
    token_file: str | None = None
    queue_size: int = 1000
    poll_interval: float = 1.0
    auth_timeout: float = 10.0
    admin_role: str = "admin"
    groups: tuple[str, ...] = (ALL_GROUPS,)

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> "WebSocketOptions":
        """Parse and check an ini section's options; ``SinkConfigError`` names the
        option at fault. Options this endpoint does not know are left alone (the
        pipeline's own ``on_failure`` and ``[DEFAULT]`` values come along)."""
        def text(name, default):
            value = options.get(name)
            if value is None:
                return default
            value = value.strip()
            if not value:
                raise SinkConfigError(f"{name}: must not be empty")
            return value

        def number(name, kind, default, low, high=None):
            raw = options.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw.strip())
            except ValueError:
                raise SinkConfigError(f"{name}: {raw!r} is not a {'whole ' if kind is int else ''}"
                                      f"number") from None
            if value < low or (high is not None and value > high):
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise SinkConfigError(f"{name}: {raw.strip()} must be {bounds}")
            return value

        name = text("auth", cls.auth)
        if not auth.known(name):
            raise SinkConfigError(f"auth: unknown token validator {name!r}; available: "
                                  f"{', '.join(auth.available())}")
        groups = tuple(g.strip() for g in (options.get("groups") or ALL_GROUPS).split(",")
                       if g.strip()) or (ALL_GROUPS,)
        return cls(
            host=text("host", cls.host),
            port=number("port", int, cls.port, 0, 65535),
            auth=name,
            token_file=text("token_file", None),
            queue_size=number("queue_size", int, cls.queue_size, 1),
            poll_interval=number("poll_interval", float, cls.poll_interval, 0.01, 3600),
            auth_timeout=number("auth_timeout", float, cls.auth_timeout, 0.1, 3600),
            admin_role=text("admin_role", cls.admin_role),
            groups=groups)

    def check_server(self) -> None:
        """What the server needs beyond the sink: a token source for ``token_file``."""
        if self.auth == "token_file" and not self.token_file:
            raise SinkConfigError("token_file: required when auth = token_file")


class WebSocketSink(Sink):
    """Rings the doorbell for every batch a pipeline hands over.

    Option ``groups`` (default ``*``: every server) names the resource groups whose
    servers to wake.
    """

    default_policy = "drop"
    #: ``deliver`` reads no document (the servers read Elasticsearch), so the
    #: listener hands over envelopes without running the pipeline's filters.
    reads_documents = False

    def __init__(self, name: str, options: Mapping[str, str], context):
        super().__init__(name, options, context)
        self.settings = WebSocketOptions.from_options(options)
        self.doorbell: Doorbell | None = None

    def start(self) -> None:
        url = getattr(self.context, "transport_url", "")
        if not url:
            raise SinkConfigError("transport_url: the websocket sink rings the doorbell "
                                  "on RabbitMQ and the listener has no transport_url")
        self.doorbell = Doorbell(url)

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        if self.doorbell is None:
            self.start()
        try:
            self.doorbell.ring(self.settings.groups)
        except DoorbellError as exc:
            # Nothing is lost: servers poll Elasticsearch every poll_interval anyway.
            raise SinkUnavailable(f"{exc} (WebSocket clients get these changes at the "
                                  f"next poll)", delivered=0) from None

    def close(self) -> None:
        if self.doorbell is not None:
            self.doorbell.close()
            self.doorbell = None
