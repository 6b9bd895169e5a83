"""Real peers for subscriptions: the API in-process behind keystonemiddleware (the
webhook receiver is devtools/receivers.py's, shared with the bench)."""
from __future__ import annotations

import pytest
import requests

from forwarders.api import wsgi
from devtools.net import free_port  # noqa: F401 - tests import it from here
from tests.functional.conftest import load_conf, wait_for, write_pipelines

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


def api_command(stack, config_file, processes, es_url=None) -> str:
    """``searchlight-forward-api`` (the console script, its own process) on the
    configuration ``stack`` wrote; its URL once /healthz answers."""
    from tests.functional.test_poison import set_options
    stack().stop()                      # only its configuration; the command serves
    if es_url:
        set_options(config_file, "elasticsearch", f"hosts = {es_url}")
    proc = processes("api", config_file)
    url = f"http://127.0.0.1:{load_conf(config_file).subscriptions.api_port}"

    def answers():
        try:
            return requests.get(url + "/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return proc.proc.poll() is not None and pytest.fail(proc.log())
    wait_for(answers, 60, "searchlight-forward-api")
    return url


def syslog_api(config_file, names, keystone, rsyslog) -> "API":
    """The API on the test's config for syslog subscriptions: the subscriptions view,
    rsyslog's CA trusted, leases long enough for TLS handshakes."""
    port = free_port()
    text = config_file.read_text().replace("lease_seconds = 6", "lease_seconds = 20")
    write_pipelines(config_file, SUBSCRIPTIONS_PIPELINE)
    config_file.write_text(text + subscriptions_conf(names, keystone, port,
                                                     syslog_ca_file=rsyslog.certs.ca))
    return API(config_file, port)
