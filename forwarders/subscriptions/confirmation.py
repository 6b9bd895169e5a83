"""The confirmation request: before anything else goes to an endpoint, its owner
must show they want it (as SNS and Zaqar ask).

A webhook endpoint receives a signed POST of type ``subscription.confirmation``
whose ``data.confirm_url`` it must visit (GET or POST); a mailbox receives a
message with the same link, and a syslog server a message (warning) whose text
holds it (the owner reads it in the log). The link's token is its only credential, so the
endpoint's owner needs no OpenStack account. Until then the subscription stays
``pending_confirmation`` and its endpoint receives nothing else.
"""
from __future__ import annotations

import hashlib

from forwarders.sinks.base import Sink
from forwarders.sinks.email.sink import EmailSink
from forwarders.sinks.syslog.sink import SyslogSink
from forwarders.sinks.webhook.sink import WebhookSink
from forwarders.subscriptions.model import Subscription
from searchlight_forward.model.envelope import Envelope

TYPE = "subscription.confirmation"


def confirm_url(public_url: str, sub: Subscription) -> str:
    return f"{public_url}/v1/subscriptions/{sub.id}/confirm?token={sub.confirmation_token}"


def payload(public_url: str, sub: Subscription) -> dict:
    return {"subscription_id": sub.id, "project_id": sub.project_id,
            "confirm_url": confirm_url(public_url, sub),
            "message": "Visit confirm_url (GET or POST) to receive changes from "
                       "searchlight-forward; ignore this to receive nothing."}


def send(sink: Sink, sub: Subscription, public_url: str) -> None:
    """Deliver the request through the subscription's own sink; raises on failure."""
    data = payload(public_url, sub)
    if isinstance(sink, WebhookSink):
        # The same id for every attempt with this token (receivers deduplicate).
        digest = hashlib.sha256(sub.confirmation_token.encode()).hexdigest()[:32]
        sink.post(f"msg_confirm_{digest}", TYPE, data)
    elif isinstance(sink, EmailSink):
        text = (f"Someone asked searchlight-forward to send changes of OpenStack project "
                f"{sub.project_id or '(all projects)'} to {sub.endpoint}.\n\n"
                f"To receive them, open:\n\n    {data['confirm_url']}\n\n"
                "If you did not ask for this, ignore this message: nothing else will be "
                "sent.\n")
        sink.send([sink.message("Confirm your subscription", text)])
    elif isinstance(sink, SyslogSink):
        # A syslog server cannot answer: its owner reads the link in the log.
        sink.send_message(sink.message(
            Envelope(resource_type="", id=sub.id, project_id=sub.project_id, version=0,
                     operation=TYPE, event_type=TYPE, timestamp="", document=None,
                     priority="warn"),
            text=f"searchlight-forward: someone asked to send changes of OpenStack "
                 f"project {sub.project_id or '(all projects)'} here; to receive them, "
                 f"open {data['confirm_url']} (ignore this to receive nothing)"))
    else:
        raise TypeError(f"no confirmation for {type(sink).__name__}")
