"""A private HAProxy in front of WebSocket servers, for a test or a benchmark.

The same ``HAProxy`` definition as the local servers' (``scripts/servers.py``: one
configuration, explained in docs/websocket.md, "Several servers behind HAProxy"),
with its own directory, a free frontend port on 127.0.0.1 and the backends given;
Debian's ``/usr/sbin/haproxy`` in the foreground (``-db``). The stats socket tells
which backends are up and how many connections each holds, so a test waits on
HAProxy's own view instead of sleeping.
"""
from __future__ import annotations

import time
from pathlib import Path

from devtools.net import free_port
from devtools.local_servers import servers





class PrivateHAProxy:
    """HAProxy on 127.0.0.1:<port> balancing ``backends`` ([(host, port)], named
    ws1, ws2, ... in that order). ``tag_backend``: the handshake's answer carries
    ``X-Backend-Server: wsN``, so a client knows where it landed."""

    def __init__(self, directory, backends, port: int | None = None,
                 tag_backend: bool = True):
        self.server = servers.HAProxy(Path(directory), port or free_port(), backends,
                                      tag_backend=tag_backend)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def config(self) -> str:
        return self.server.config_file.read_text()

    def log(self) -> str:
        try:
            return self.server.log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 20.0) -> "PrivateHAProxy":
        """Write the config (checked by ``haproxy -c``), start, wait until the
        frontend accepts connections and the stats socket answers."""
        self.server.ready_timeout = timeout
        self.server.up({})
        return self

    def stop(self) -> None:
        self.server.down()

    def backends(self) -> dict[str, dict[str, str]]:
        """name -> HAProxy's row for it: ``status`` (UP, DOWN, ...), ``check_status``
        (L7OK, L4CON, ...), ``scur`` (connections now), ``stot`` (in total)."""
        return self.server.servers()

    def wait_backends(self, want: dict[str, str], timeout: float = 15.0) -> dict:
        """Wait until each named backend has the status wanted ("UP" after a passed
        check, not merely HAProxy's initial assumption; "DOWN"). Raises
        TimeoutError with the last rows."""
        deadline = time.monotonic() + timeout
        rows: dict = {}
        while time.monotonic() < deadline:
            rows = self.backends()
            if all(self._is(rows.get(name), status) for name, status in want.items()):
                return rows
            time.sleep(0.1)
        raise TimeoutError(f"HAProxy backends not {want} after {timeout}s: "
                           + str({n: (r.get("status"), r.get("check_status"))
                                  for n, r in rows.items()}))

    @staticmethod
    def _is(row: dict | None, status: str) -> bool:
        if row is None:
            return False
        if status == "UP":
            return row.get("status") == "UP" and row.get("check_status") == "L7OK"
        return row.get("status", "").startswith(status)

    def __enter__(self) -> "PrivateHAProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
