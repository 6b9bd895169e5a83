"""E-mail subscriptions on a real SMTP server (aiosmtpd on 127.0.0.1): the
confirmation mail's link, one message per change, and a digest per interval."""
from __future__ import annotations

import email
import email.policy
import json
import re
import threading

import pytest
import requests
from aiosmtpd.controller import Controller

from tests.functional.conftest import wait_for, write_pipelines
from tests.functional.subscriptions_support import (API, SUBSCRIPTIONS_PIPELINE,
                                                     free_port, subscriptions_conf)


class Mailbox:
    """aiosmtpd's handler: every message as received, parsed."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


@pytest.fixture
def stack(config_file, names, keystone, es, smtp):
    port = free_port()
    smtp_port, mailbox = smtp
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(
        text + subscriptions_conf(names, keystone, port, min_digest_interval=1)
        .replace("[smtp]\n", f"[smtp]\nhost = 127.0.0.1\nport = {smtp_port}\n"
                             "from_address = cloud@example.org\n"))
    api = API(config_file, port)
    yield api, mailbox
    api.stop()
    es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


def confirm_by_mail(api, token, mailbox, address, **fields) -> dict:
    resp = api.call("POST", "/v1/subscriptions", token,
                    {"protocol": "email", "endpoint": address, **fields})
    assert resp.status_code == 201, resp.text
    sub = resp.json()["subscription"]
    [mail] = wait_for(lambda: mailbox.to(address), 30, "the confirmation mail")
    assert "Confirm" in mail["Subject"] and mail["From"] == "cloud@example.org"
    link = re.search(r"(http://\S+/confirm\?token=\S+)", mail.get_content()).group(1)
    assert requests.get(link, timeout=30).json()["state"] == "active"
    return sub


def changes_in(mail) -> list[dict]:
    text = mail.get_content()
    return json.loads(text.split("The changes as JSON:", 1)[1])


def test_one_mail_per_change_after_the_link_was_followed(stack, start_delivery,
                                                          writer, keystone):
    api, mailbox = stack
    token = keystone.token("demo")
    project = keystone.users["demo"]["project_id"]
    start_delivery()
    address = "ops@example.com"
    confirm_by_mail(api, token, mailbox, address)
    writer(project, ["m1", "m2"], 1, name="web")
    writer(keystone.users["alt"]["project_id"], ["other"], 1)
    writer(project, ["m3"], 1)
    mails = wait_for(lambda: (lambda m: m if len(m) >= 4 else None)(mailbox.to(address)),
                     60, "three change mails after the confirmation")
    got = [changes_in(m)[0] for m in mails[1:]]
    assert [(c["id"], c["version"]) for c in got] == [("m1", 1), ("m2", 1), ("m3", 1)]
    assert all(c["project_id"] == project for c in got)
    assert "OS::Nova::Server web (m1) changed" in mails[1]["Subject"]
    assert mails[1]["Auto-Submitted"] == "auto-generated"


def test_a_digest_holds_each_resources_latest_state_of_the_interval(
        stack, start_delivery, writer, keystone):
    api, mailbox = stack
    token = keystone.token("demo")
    project = keystone.users["demo"]["project_id"]
    start_delivery()
    address = "digest@example.com"
    confirm_by_mail(api, token, mailbox, address, email_mode="digest", digest_interval=3)
    for version in (1, 2, 3):
        writer(project, ["d1", "d2", "d3"], version)
    mails = wait_for(lambda: (lambda m: m if len(m) >= 2 else None)(mailbox.to(address)),
                     60, "a digest")
    digest = changes_in(mails[1])
    latest = {}
    for change in digest:
        assert change["version"] > latest.get(change["id"], 0)
        latest[change["id"]] = change["version"]
    assert latest == {"d1": 3, "d2": 3, "d3": 3}
    assert "change(s) in the last 3 s" in mails[1]["Subject"]


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (and its key), as files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("password, delivered", [("s3cret", True), ("wrong", False)])
def test_starttls_and_auth_on_a_server_that_requires_both(
        config_file, names, keystone, es, tmp_path, start_delivery, password, delivered):
    import ssl

    from aiosmtpd.smtp import AuthResult
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), tls_context=tls,
        require_starttls=True, auth_require_tls=True,
        authenticator=lambda server, session, envelope, mechanism, data: AuthResult(
            success=(data.login, data.password) == (b"cloud", b"s3cret")))
    controller.start()
    port = free_port()
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(text + subscriptions_conf(names, keystone, port).replace(
        "[smtp]\n", f"[smtp]\nhost = 127.0.0.1\nport = {controller.port}\nstarttls = true\n"
                    f"ca_file = {cert}\nusername = cloud\npassword = {password}\n"))
    api = API(config_file, port)
    try:
        start_delivery()
        token = keystone.token("demo")
        sub = api.call("POST", "/v1/subscriptions", token, {
            "protocol": "email", "endpoint": "tls@example.com"}).json()["subscription"]
        shown = wait_for(lambda: (lambda s: s if s["confirmation_attempts"] else None)(
            api.call("GET", f"/v1/subscriptions/{sub['id']}", token).json()[
                "subscription"]), 30, "a confirmation attempt")
        if delivered:
            assert shown["confirmation_error"] is None
            [mail] = mailbox.to("tls@example.com")
            assert "Confirm" in mail["Subject"]
        else:
            # (a reason a person reads: no class name)
            assert shown["confirmation_error"].startswith("SMTP 127.0.0.1:")
            assert mailbox.to("tls@example.com") == []
    finally:
        api.stop()
        controller.stop()
        es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)
