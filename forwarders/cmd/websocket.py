"""searchlight-forward-websocket --config-file FILE

Serves a resource group's changes to WebSocket clients, apart from the listeners and
the delivery service: it reads the change log itself (any number of listener
processes may write, any number of these servers may read) and wakes up when the
listeners' doorbell rings. Settings: [websocket]; protocol: docs/websocket.md.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from forwarders.websocket import service
from forwarders.options import ConfigError
from forwarders.cmd.common import fail, setup

COMMAND = "searchlight-forward-websocket"


def main(argv: list[str] | None = None) -> None:
    conf = setup(argv)
    if not any(level.startswith("websockets=") for level in conf.default_log_levels or ()):
        logging.getLogger("websockets").setLevel(logging.WARNING)   # a line per connection
    try:
        server = service.build(conf)
    except ConfigError as exc:
        fail(COMMAND, str(exc))

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.serve_until(stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
