"""POSTing to a tenant's URL, only to addresses the destination guard allowed.

The URL's host is resolved and every address checked (``sinks.destinations``); the
connection then goes to a checked address, with the URL's name kept for the
``Host`` header and for TLS (SNI and certificate check), so a name that resolves
elsewhere a moment later gains nothing. Redirects are not followed (a 3xx is a
failed delivery: following it would be a request to an address nobody checked).
Resolutions are reused for ``resolve_ttl`` seconds.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence
from urllib.parse import urlsplit

import certifi
import urllib3

from forwarders.sinks import destinations
from forwarders.sinks.destinations import DestinationRefused, Network

USER_AGENT = "searchlight-forward-webhooks/1"


class Response:
    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body


class WebhookClient:
    def __init__(self, url: str, allowed: Sequence[Network], timeout: float = 10.0,
                 resolve_ttl: float = 60.0, max_connections: int = 4):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rpartition("@")[2]
        self.allowed = tuple(allowed)
        self.timeout = timeout
        self.resolve_ttl = resolve_ttl
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._resolved: tuple[float, list[str]] | None = None
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}

    def addresses(self) -> list[str]:
        """Checked addresses of the host (cached); ``DestinationRefused``."""
        with self._lock:
            if self._resolved and time.monotonic() - self._resolved[0] < self.resolve_ttl:
                return self._resolved[1]
        found = destinations.resolve(self.host, self.port, self.allowed)
        with self._lock:
            self._resolved = (time.monotonic(), found)
        return found

    def _pool(self, address: str) -> urllib3.HTTPConnectionPool:
        with self._lock:
            pool = self._pools.get(address)
            if pool is None:
                common = dict(maxsize=self.max_connections, block=False, retries=False,
                              timeout=urllib3.Timeout(total=self.timeout))
                if self.scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        address, self.port, server_hostname=self.host,
                        assert_hostname=self.host, cert_reqs="CERT_REQUIRED",
                        ca_certs=certifi.where(), **common)
                else:
                    pool = urllib3.HTTPConnectionPool(address, self.port, **common)
                self._pools[address] = pool
            return pool

    def post(self, body: bytes, headers: dict[str, str],
             content_type: str = "application/json") -> Response:
        """POST ``body``; the response (any status). Raises ``DestinationRefused``
        or urllib3's errors (connection, timeout)."""
        return self.request("POST", self.path, body,
                            dict(headers, **{"Content-Type": content_type}))

    def get(self, query: str) -> Response:
        """GET the URL with ``query`` added to its own (a WebSub verification)."""
        sep = "&" if "?" in self.path else "?"
        return self.request("GET", f"{self.path}{sep}{query}", None, {})

    def request(self, method: str, path: str, body: bytes | None,
                headers: dict[str, str]) -> Response:
        address = self.addresses()[0]
        resp = self._pool(address).urlopen(
            method, path, body=body, redirect=False, assert_same_host=False,
            headers=dict(headers, **{"Host": self.host_header, "User-Agent": USER_AGENT}),
            preload_content=False)
        try:
            data = resp.read(65536)         # enough for a reason; never an endless body
        finally:
            if resp.length_remaining == 0:
                resp.release_conn()         # kept alive for the next delivery
            else:
                resp.close()                # more (or unknown) left: drop the connection
        return Response(resp.status, data)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


__all__ = ["WebhookClient", "Response", "DestinationRefused"]
