"""Standard Webhooks signatures (pure).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
HMAC-SHA256 with the secret's bytes (base64 after ``whsec_``), sent as
``v1,<base64>``. Several signatures, space-separated, let a receiver roll a secret
over: during the overlap every current secret signs and any one that verifies is
enough. Receivers check with the ``standardwebhooks`` package (or its siblings in
other languages); the tests do exactly that.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Iterable

PREFIX = "whsec_"


def key_of(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError if it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(PREFIX):], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ and base64") from None


def parse_secret(text: str) -> tuple[str, float | None]:
    """``whsec_...`` or ``whsec_...@<epoch seconds>`` (it signs until then) ->
    (secret, expiry or None); ValueError saying what is wrong."""
    secret, at, until = text.strip().partition("@")
    key_of(secret)
    if not at:
        return secret, None
    try:
        expiry = float(until)
    except ValueError:
        raise ValueError(f"{secret[:10]}...@{until}: after @ give when the secret "
                         "stops signing, in epoch seconds") from None
    return secret, expiry


def signature(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` signature per secret."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key_of(s), content, hashlib.sha256).digest()).decode()
        for s in secrets)


def headers(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secrets, msg_id, timestamp, body)}
