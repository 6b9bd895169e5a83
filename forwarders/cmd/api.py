"""searchlight-forward-api --config-file FILE

The subscriptions API (docs/subscriptions.md): Keystone-authenticated JSON at
/v1/subscriptions, on [subscriptions] api_host:api_port, served by waitress with the
limits of [subscriptions] api_* (forwarders/api/server.py). Tokens are validated by
keystonemiddleware ([keystone_authtoken]); rules are oslo.policy's ([oslo_policy]).
"""
from __future__ import annotations

import os
import signal
import threading

from forwarders.api import wsgi
from forwarders.cmd.common import fail, setup

COMMAND = "searchlight-forward-api"


def main(argv: list[str] | None = None) -> None:
    conf = setup(argv)
    try:
        app = wsgi.build(conf)
    except ValueError as exc:
        fail(COMMAND, str(exc))
    server = wsgi.serve(app, conf.subscriptions.api_host, conf.subscriptions.api_port,
                        conf)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    server.stop()


def init_application():
    """For uWSGI / mod_wsgi (their own limits apply, not [subscriptions]' api_*)."""
    files = [f for f in os.environ.get("SEARCHLIGHT_FORWARD_CONFIG", "").split(",") if f]
    return wsgi.build(setup([arg for f in files for arg in ("--config-file", f)]))


if __name__ == "__main__":
    main()
