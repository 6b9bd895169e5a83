"""Raw HTTP exchanges for hostile-client tests and the fault suite: what a
well-behaved client library would never send (a head trickled a byte at a time, a
body the server refuses before it is sent)."""
from __future__ import annotations

import select
import socket
import time


def exchange(port: int, head: bytes, body_size: int = 0, trickle: float = 0.0,
             limit: float = 20.0) -> tuple[bytes, float]:
    """Raw HTTP: ``head``, a byte every ``trickle`` s if set, then ``body_size`` spaces,
    stopping as soon as the server answers. (The answer's first bytes, seconds.)"""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        try:
            for i in range(len(head) if trickle else 1):
                sock.sendall(head[i:i + 1] if trickle else head)
                if trickle and select.select([sock], [], [], trickle)[0]:
                    break
                if time.monotonic() - t0 > limit:
                    return b"", time.monotonic() - t0
            chunk, sent = b" " * 65536, 0
            while sent < body_size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk[:body_size - sent])
                sent += len(chunk)
        except OSError:
            pass
        answer = b""
        try:                             # the whole answer: the server closes after it
            while True:
                sock.settimeout(max(0.1, limit - (time.monotonic() - t0)))
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (socket.timeout, OSError):
            pass
        return answer, time.monotonic() - t0


def status_of(answer: bytes) -> int | None:
    parts = answer.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
