"""Content distribution to a WebSub subscriber: each change as an Atom document of
one entry, POSTed to the callback with the hub and topic as Link headers and, when
the subscriber gave a ``hub.secret``, ``X-Hub-Signature: sha256=<HMAC of the body>``
(W3C WebSub 7 and 8). The webhook sink's machinery does the rest: per-resource
lanes (order), the destination guard, 410 Gone, the subscription's failure policy.

Options: those of the webhook sink without ``secrets``, plus ``topic`` (the feed's
URL), ``hub`` (the hub's URL), ``hub_secret`` and ``title``.
"""
from __future__ import annotations

import hashlib
import hmac

from forwarders.sinks.websub import atom
from forwarders.sinks.webhook.sink import WebhookSink
from searchlight_forward.model.envelope import Envelope


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebSubSink(WebhookSink):
    signs_with_secrets = False

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        o = self.options
        self.topic = o.text("topic", required=True)
        self.hub = o.text("hub", required=True)
        self.hub_secret = o.text("hub_secret", "") or ""
        self.title = o.text("title", "changes")

    def send_change(self, envelope: Envelope) -> None:
        body = atom.document(self.title, self.topic, self.topic, self.hub, None, [envelope])
        headers = {"Link": f'<{self.hub}>; rel="hub", <{self.topic}>; rel="self"'}
        if self.hub_secret:
            headers["X-Hub-Signature"] = signature(self.hub_secret, body)
        self.send(body, headers, atom.CONTENT_TYPE)
