"""[websocket] compression with a real client: permessage-deflate is negotiated when
the server offers it, and not at all with compression = none (no zlib state per
connection: docs/benchmarks.md, "Ten thousand connections")."""
from __future__ import annotations

from websockets.sync.client import connect

from tests.functional.websocket_support import SERVER


def extensions(server) -> str | None:
    with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as ws:
        return ws.response.headers.get("Sec-WebSocket-Extensions")


def test_deflate_is_negotiated_and_none_turns_it_off(ws_server):
    assert "permessage-deflate" in (extensions(ws_server(types=[SERVER])) or "")
    assert extensions(ws_server(types=[SERVER], compression=None)) is None
