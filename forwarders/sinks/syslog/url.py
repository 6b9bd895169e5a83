"""Syslog destinations as URLs (pure): ``syslog+tls://host[:6514]``,
``syslog+tcp://host[:514]``, ``syslog+udp://host[:514]``."""
from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = {"syslog+tls": ("tls", 6514), "syslog+tcp": ("tcp", 514),
           "syslog+udp": ("udp", 514)}


def parse_url(url: str) -> tuple[str, str, int]:
    """(transport, host, port) of a syslog URL; ValueError says what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError("must be syslog+tls://host[:port], syslog+tcp://host[:port] or "
                         "syslog+udp://host[:port]")
    transport, default_port = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError("only a host and a port: nothing else in the URL")
    return transport, parts.hostname, port
