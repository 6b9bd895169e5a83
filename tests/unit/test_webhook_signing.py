"""Our signatures verify with the Standard Webhooks reference package, and fail
with it once anything signed changes."""
import time

import pytest
import standardwebhooks

from forwarders.sinks.webhook import signing
from forwarders.subscriptions.model import new_secret


def test_the_reference_package_verifies_what_we_sign():
    secret = new_secret()
    body = b'{"type":"resource.updated","data":{"id":"x"}}'
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {
        "type": "resource.updated", "data": {"id": "x"}}


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_anything_changed_fails_verification(tamper):
    secret, other = new_secret(), new_secret()
    body, now = b'{"a":1}', int(time.time())
    headers = signing.headers([secret], "msg_1", now, body)
    if tamper == "body":
        body = b'{"a":2}'
    elif tamper == "id":
        headers["webhook-id"] = "msg_2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    else:
        secret = other
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_during_a_rotation_either_secret_verifies():
    new, old = new_secret(), new_secret()
    body, now = b"{}", int(time.time())
    headers = signing.headers([new, old], "msg_1", now, body)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (new, old):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_a_secret_must_be_whsec_base64():
    for bad in ("abc", "whsec_***"):
        with pytest.raises(ValueError):
            signing.key_of(bad)


def test_a_secret_with_an_expiry_signs_only_until_then():
    from forwarders.sinks.base import SinkContext
    from forwarders.sinks.webhook.sink import Failed, WebhookSink
    new, old = new_secret(), new_secret()
    assert signing.parse_secret(f"{old}@1500.5") == (old, 1500.5)
    assert signing.parse_secret(new) == (new, None)
    with pytest.raises(ValueError, match="epoch seconds"):
        signing.parse_secret(f"{old}@tomorrow")
    sink = WebhookSink("w", {"url": "http://127.0.0.1:9/hook",
                             "secrets": f"{new},{old}@1500.5"}, SinkContext())
    try:
        assert sink.signing_secrets(1500.0) == (new, old)
        assert sink.signing_secrets(1500.5) == (new,)
        lone = WebhookSink("w", {"url": "http://127.0.0.1:9/hook",
                                 "secrets": f"{old}@1500.5"}, SinkContext())
        with pytest.raises(Failed, match="every signing secret has expired"):
            lone.signing_secrets(1600.0)
        lone.close()
    finally:
        sink.close()
