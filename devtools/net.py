"""Small network helpers tests and benchmarks share."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (bind to it soon: another may take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
