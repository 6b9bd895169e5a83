"""searchlight-forward-delivery --config-file FILE

Delivers every pipeline of forwarders.ini and every tenant's subscription from the
index, each with its own durable cursor (views are served by the WebSocket server and
the API, not here); run as many as you like, on any hosts: they share the
pipelines (on one host, each with its own status_port). See docs/forwarding.md.
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
