"""Real peers for subscriptions: the API in-process behind keystonemiddleware, and
an HTTP receiver that records every delivery as it arrived on the wire."""
from __future__ import annotations

import http.server
import json
import threading
import time

import requests

from forwarders.api import wsgi
from devtools.net import free_port  # noqa: F401 - tests import it from here
from tests.functional.conftest import load_conf, write_pipelines

SUBSCRIPTIONS_PIPELINE = """
[forwarding]
pipelines =

[view:subscriptions]
filters = secrets

[filter:secrets]
use = egg:searchlight-forward#regex_fields
patterns = ^secret_
"""


def subscriptions_conf(names, keystone, api_port: int, **extra) -> str:
    options = {"index": f"{names['state']}-subscriptions", "api_port": api_port,
               "public_url": f"http://127.0.0.1:{api_port}",
               "allowed_networks": "127.0.0.1/32", "allow_http": "true",
               "retry_schedule": "0.2, 0.5, 1", "refresh_interval": "0.3",
               "confirmation_interval": "0.5", "webhook_timeout": "2", **extra}
    return ("\n[subscriptions]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
            + "\n[smtp]\ntimeout = 2\n\n" + keystone.authtoken_conf())


def started_apis(config_file, names, keystone, es):
    """The body of a fixture: yields ``start(**[subscriptions] options)``, which
    starts the API on the test's config (a cursor lease that outlasts two endpoint
    calls of 2 x 2 + 6 s); every API started is stopped and the store deleted at the
    end."""
    port = free_port()
    base = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    started = []

    def start(**options):
        config_file.write_text(base + subscriptions_conf(names, keystone, port, **options))
        started.append(API(config_file, port))
        return started[-1]
    yield start
    for api in started:
        api.stop()
    es.indices.delete(index=f"{names['state']}-subscriptions", ignore_unavailable=True)


class API:
    """The subscriptions API on 127.0.0.1, built from the test's config file."""

    def __init__(self, config_file, port: int):
        conf = load_conf(config_file)
        self.app = wsgi.build(conf)
        self.server = wsgi.serve(self.app, "127.0.0.1", port, conf)
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, token: str | None = None, body=None,
             **params) -> requests.Response:
        headers = {"X-Auth-Token": token} if token else {}
        return requests.request(method, self.url + path, json=body, headers=headers,
                                params=params, timeout=30)

    def stop(self) -> None:
        self.server.stop()


class Delivery:
    def __init__(self, headers: dict, body: bytes):
        self.headers = headers
        self.body = body
        self.json = json.loads(body)
        self.at = time.monotonic()


class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``status`` (settable), records each
    request, and visits the confirmation link of a confirmation request when
    ``confirm`` is set."""

    def __init__(self, confirm: bool = True):
        self.status = 200
        self.confirm = confirm
        self.deliveries: list[Delivery] = []
        self.refused: list[Delivery] = []         # answered with a non-2xx status
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = Delivery({k.lower(): v for k, v in self.headers.items()}, body)
                status = receiver.status
                with receiver.lock:
                    (receiver.deliveries if 200 <= status < 300 else
                     receiver.refused).append(delivery)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status < 300 and receiver.confirm and \
                        delivery.json.get("type") == "subscription.confirmation":
                    threading.Thread(target=requests.get, daemon=True, args=(
                        delivery.json["data"]["confirm_url"],), kwargs={"timeout": 30}
                    ).start()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def changes(self) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries
                    if d.json.get("type") != "subscription.confirmation"]

    def confirmations(self) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries + self.refused
                    if d.json.get("type") == "subscription.confirmation"]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
