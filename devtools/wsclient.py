"""What tests and benchmarks share to watch a WebSocket connection end."""
from __future__ import annotations

import time

import websockets

STILL_OPEN = "still open"


def close_code_of(ws, timeout: float = 15.0):
    """Read (and drop) frames of a ``websockets.sync`` connection until the server
    closes it: its close code, or STILL_OPEN after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        pass
    return STILL_OPEN
