"""One change as an RFC 5424 syslog message, and its framing (pure).

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [change@32473 ...] BOM MSG

* PRI: the facility (an option, ``local0`` by default) and a severity from the
  notification's priority (the alert's when more severe: a failed boot is ``err``);
* HOSTNAME, APP-NAME: options (this host's name, ``searchlight-forward``); PROCID
  ``-``; MSGID the operation (``index``, ``delete``, ``resync_begin``...);
* structured data ``change@32473`` (32473 is IANA's example enterprise number: an
  operator with a number of its own sets ``sd_id``) with ``id``, ``type``,
  ``project``, ``version``, ``operation``, ``event_type`` and ``priority``;
* MSG, after a UTF-8 BOM: one line a person reads, e.g. ``OS::Nova::Server
  3f2a... (web-1) updated: ACTIVE (compute.instance.update)``.

Framing: UDP sends one message per datagram; TCP and TLS use RFC 6587 octet
counting (``LEN SP MSG``), which RFC 5425 requires over TLS.
"""
from __future__ import annotations

import datetime
from typing import Mapping

from searchlight_forward.model.envelope import Envelope, summary

FACILITIES = {name: code for code, name in enumerate((
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
    "local3", "local4", "local5", "local6", "local7"))}
#: oslo.messaging priority -> syslog severity (RFC 5424 section 6.2.1)
SEVERITIES = {"critical": 2, "error": 3, "warn": 4, "audit": 5, "info": 6, "sample": 6,
              "debug": 7}
BOM = "\ufeff"
SD_ID = "change@32473"
MAX_HOSTNAME, MAX_APP_NAME, MAX_MSGID = 255, 48, 32
MAX_MESSAGE = 8192          # octets of the summary line (the structured data is small)


def _header_field(value: str, limit: int) -> str:
    """PRINTUSASCII without spaces, at most ``limit`` characters, ``-`` if empty."""
    cleaned = "".join(c for c in str(value) if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def sd_escape(value: object) -> str:
    """An SD-PARAM value: ``"``, ``\\`` and ``]`` escaped (RFC 5424 6.3.3)."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def severity(envelope: Envelope) -> int:
    return SEVERITIES.get(envelope.routing_priority, 6)


def format_message(envelope: Envelope, facility: int, hostname: str, app_name: str,
                   sd_id: str = SD_ID, now: datetime.datetime | None = None,
                   text: str | None = None) -> bytes:
    """The RFC 5424 message (no framing)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = now.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")
    params: Mapping[str, object] = {
        "id": envelope.id, "type": envelope.resource_type,
        "project": envelope.project_id or "", "version": envelope.version,
        "operation": envelope.operation, "event_type": envelope.event_type,
        "priority": envelope.routing_priority}
    data = " ".join(f'{k}="{sd_escape(v)}"' for k, v in params.items())
    header = (f"<{facility * 8 + severity(envelope)}>1 {stamp.replace('+00:00', 'Z')} "
              f"{_header_field(hostname, MAX_HOSTNAME)} "
              f"{_header_field(app_name, MAX_APP_NAME)} - "
              f"{_header_field(envelope.operation, MAX_MSGID)} [{sd_id} {data}] ")
    return (header + BOM + (text if text is not None else summary(envelope)[:MAX_MESSAGE])).encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing (TCP, and TLS per RFC 5425)."""
    return str(len(message)).encode() + b" " + message
