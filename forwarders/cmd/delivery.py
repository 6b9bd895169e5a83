"""searchlight-forward-delivery --config-file FILE

Delivers every pipeline of forwarders.ini (but the websocket one, which the WebSocket
server serves) from the index, each with its own durable cursor; run as many as
you like, on any hosts: they share the pipelines. See docs/forwarding.md.
"""
from __future__ import annotations

from forwarders.delivery import worker
from forwarders.options import ConfigError
from forwarders.cmd.common import fail, setup


def main(argv: list[str] | None = None) -> None:
    conf = setup(argv)
    try:
        worker.run(conf)
    except ConfigError as exc:
        fail("searchlight-forward-delivery", str(exc))


if __name__ == "__main__":
    main()
