"""A TCP proxy on 127.0.0.1 in front of a real server, that a test can cut.

It lets one test take one consumer's peer away (connections refused, open ones
reset) without stopping the shared server that other tests, or a running demo,
also use. ``block()`` and ``unblock()`` return once the proxy is in that state.
"""
from __future__ import annotations

import selectors
import socket
import threading


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._blocked = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True, name="faultproxy")
        self.accepted = 0
        self.refused = 0
        self._lose_answers = 0
        self.answers_lost = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def block(self) -> None:
        """Refuse new connections (reset at once) and reset the open ones."""
        self._blocked.set()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _reset(conn)

    def unblock(self) -> None:
        self._blocked.clear()

    def lose_answers(self, count: int = 1) -> None:
        """The next ``count`` answers of the server are not passed on: the request
        has reached the server (and may have been applied), then the client's
        connection is reset, as when an answer is lost on the way."""
        with self._lock:
            self._lose_answers = count

    def stop(self) -> None:
        self._stop.set()
        self.block()
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self._blocked.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            self.accepted += 1
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is b and self._take_lost_answer():
                        return                  # reset both: the answer is lost
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            sel.close()
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)
            _reset(a)
            _reset(b)

    def _take_lost_answer(self) -> bool:
        with self._lock:
            if self._lose_answers <= 0:
                return False
            self._lose_answers -= 1
            self.answers_lost += 1
            return True


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
