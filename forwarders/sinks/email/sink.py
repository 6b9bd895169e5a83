"""The ``email`` sink: changes as e-mail over SMTP (smtplib; STARTTLS, SMTPS, AUTH).

Options (an ini section, or a subscription's settings with ``[smtp]``'s):

* ``to`` (required), ``mode``: ``each`` (one message per change, the default) or
  ``digest`` (one message per ``digest_interval`` seconds with every change since,
  each resource at its latest state), ``rate_limit`` (messages per second, 0: none);
* ``smtp_host``, ``smtp_port``, ``starttls``, ``ssl``, ``ca_file``, ``username``,
  ``password``, ``from_address``, ``timeout``.

A digest does not keep changes in memory: the sink answers ``SinkNotDue`` until the
interval is over, so the changes wait in the change log behind the cursor and are
read (coalesced to each resource's latest state) when the digest is due.

Classification: the recipient refused with a permanent answer (5xx, at ``RCPT`` or
after ``DATA``) is ``SinkGone`` (a subscription is disabled; a confirmation request
fails at once); a connection failure, a timeout, a 4xx answer or a refused sender
(the operator's ``[smtp] from_address``) is ``SinkUnavailable``.
"""
from __future__ import annotations

import email.message
import email.utils
import json
import smtplib
import socket
import ssl
import time
from typing import Sequence

from forwarders.options import Boolean, Float, Integer
from forwarders.sinks.base import (Sink, SinkConfigError, SinkGone, SinkNotDue,
                                   SinkUnavailable)
from forwarders.sinks.ratelimit import Pacer, Stopped
from searchlight_forward.model.envelope import DELETE, Envelope

EACH, DIGEST = "each", "digest"
DIGEST_BATCH = 1000          # changes per digest message at most
PACING = 2.0                 # seconds of rate-limited sending per call at most


def call_timeout(timeout: float) -> float:
    """Longest a deliver() call takes with this SMTP timeout (connect, then send)."""
    return 2 * timeout + PACING + 1.0


def describe(envelope: Envelope) -> str:
    """One line: what changed (pure)."""
    if envelope.is_control:
        return f"{envelope.operation}: {(envelope.document or {}).get('reason', '')}"
    name = (envelope.document or {}).get("name")
    what = "deleted" if envelope.operation == DELETE else "changed"
    label = f"{name} ({envelope.id})" if name else envelope.id
    return (f"{envelope.resource_type} {label} {what}"
            f"{f' by {envelope.event_type}' if envelope.event_type else ''}"
            f" in project {envelope.project_id}")


class EmailSink(Sink):
    default_policy = "hold"

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        o = self.options
        self.to = o.text("to", required=True)
        self.mode = o.text("mode", EACH)
        if self.mode not in (EACH, DIGEST):
            raise SinkConfigError("mode", "each or digest")
        self.digest_interval = o.typed("digest_interval", Float(min=1.0), 3600.0)
        self.host = o.text("smtp_host", "127.0.0.1")
        self.port = o.typed("smtp_port", Integer(min=1, max=65535), 25)
        self.starttls = o.typed("starttls", Boolean(), False)
        self.ssl = o.typed("ssl", Boolean(), False)
        self.ca_file = o.text("ca_file")
        self.username = o.text("username")
        self.password = o.get("password")
        self.sender = o.text("from_address", "searchlight-forward@localhost")
        self.timeout = o.typed("timeout", Float(min=0.1), 5.0)
        self.subject_prefix = o.text("subject_prefix", "[searchlight-forward]")
        rate = o.typed("rate_limit", Float(min=0), 0.0)
        self.limiter = Pacer(rate)
        if self.mode == DIGEST:
            self.batch_size = DIGEST_BATCH
        elif rate:
            self.batch_size = max(1, min(100, int(rate * PACING)))
        self.call_timeout = call_timeout(self.timeout)
        self._window: float | None = None     # when the current digest's interval began

    # -- SMTP ------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                smtp.starttls(context=context)
        if self.username:
            smtp.login(self.username, self.password or "")
        return smtp

    def send(self, messages: Sequence[email.message.EmailMessage]) -> int:
        """Send ``messages`` on one connection; how many went. Raises SinkGone or
        SinkUnavailable(delivered=n)."""
        sent = 0
        try:
            smtp = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise SinkUnavailable(f"SMTP {self.host}:{self.port} refused the login "
                                  f"({exc.smtp_code}); check [smtp] username and "
                                  "password") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SinkUnavailable(f"SMTP {self.host}:{self.port}: {exc}") from None
        try:
            for message in messages:
                self.limiter.acquire()
                smtp.send_message(message)
                sent += 1
        except smtplib.SMTPRecipientsRefused as exc:
            answers = list(exc.recipients.values())
            if all(code >= 500 for code, _ in answers):
                raise SinkGone(f"the SMTP server refused {self.to} permanently: "
                               f"{_answer(*answers[0])}") from None
            raise SinkUnavailable(f"the SMTP server refused {self.to} for now: "
                                  f"{_answer(*answers[0])}", sent) from None
        except smtplib.SMTPSenderRefused as exc:
            raise SinkUnavailable(f"the SMTP server refused the sender {self.sender}: "
                                  f"{_answer(exc.smtp_code, exc.smtp_error)}; check "
                                  "[smtp] from_address", sent) from None
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code >= 500:
                raise SinkGone(f"the SMTP server refused a message to {self.to} "
                               f"permanently: {_answer(exc.smtp_code, exc.smtp_error)}"
                               ) from None
            raise SinkUnavailable(f"the SMTP server refused a message to {self.to} for "
                                  f"now: {_answer(exc.smtp_code, exc.smtp_error)}",
                                  sent) from None
        except smtplib.SMTPResponseException as exc:
            raise SinkUnavailable(f"SMTP {self.host}:{self.port} answered "
                                  f"{_answer(exc.smtp_code, exc.smtp_error)}", sent) from None
        except (OSError, smtplib.SMTPException, Stopped, socket.timeout) as exc:
            raise SinkUnavailable(f"SMTP {self.host}:{self.port}: {exc}", sent) from None
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return sent

    def message(self, subject: str, text: str) -> email.message.EmailMessage:
        message = email.message.EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to
        message["Subject"] = f"{self.subject_prefix} {subject}".strip()
        message["Date"] = email.utils.formatdate(localtime=False)
        message["Message-ID"] = email.utils.make_msgid(domain="searchlight-forward")
        message["Auto-Submitted"] = "auto-generated"      # RFC 3834: no auto-replies
        message.set_content(text)
        return message

    # -- changes -----------------------------------------------------------------------

    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        if self.mode == EACH:
            self.send([self.message(describe(e), _body([e])) for e in envelopes])
            return
        now = time.monotonic()
        if self._window is None:
            self._window = now
        due = self._window + self.digest_interval
        if now < due:
            raise SinkNotDue(due)
        changes = [e for e in envelopes if not e.is_control]
        subject = f"{len(changes)} change(s) in the last {self.digest_interval:g} s"
        self.send([self.message(subject, _body(envelopes))])
        self._window = None

    def close(self) -> None:
        self.limiter.close()


def _answer(code: int, text: bytes | str) -> str:
    """An SMTP answer as a person reads it: ``550 5.1.1 no such user``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}"


def _body(envelopes: Sequence[Envelope]) -> str:
    lines = [describe(e) for e in envelopes]
    data = json.dumps([e.to_dict() for e in envelopes], indent=2, sort_keys=True,
                      default=str)
    return "\n".join(lines) + "\n\n-- \nThe changes as JSON:\n" + data + "\n"
