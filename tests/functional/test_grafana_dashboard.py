"""Every query of the Grafana dashboard (etc/grafana/searchlight-forward.json) on a real
Prometheus (Debian's, installed by `make test-servers`) scraping a real listener,
delivery service and WebSocket server: each returns a series, so no panel names a
metric the processes do not export (a misspelled name returns nothing).

Grafana itself is not run (it cannot be used on the development machines); its
variables are substituted as Grafana would: ``$__rate_interval`` is four scrape
intervals, ``$job`` and ``$instance`` select everything scraped here."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from devtools import grafana_dashboard
from forwarders.delivery import worker as delivery_worker
from forwarders.websocket import protocol
from tests.functional.conftest import load_conf, wait_for, write_pipelines
from tests.functional.delivery_support import pipelines_ini
from tests.functional.test_dead_letters import image_payload
from tests.functional.test_poison import publish_image, set_options
from tests.functional.test_status_endpoints import free_port
from tests.functional.websocket_support import SERVER

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE_SECONDS = 1
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"


def substitute(expr: str) -> str:
    """What Grafana sends for "All" jobs and instances (jobs named as in
    docs/operations.md)."""
    return grafana_dashboard.substitute(expr, RATE_INTERVAL, job="searchlight-forward-.*")


def dashboard_targets(path: pathlib.Path = grafana_dashboard.OUTPUT) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    board = json.loads(path.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"]
            for target in panel.get("targets", [])]


class Prometheus:
    """A private Prometheus on 127.0.0.1: its own port, storage and scrape config."""

    def __init__(self, workdir: pathlib.Path, jobs: dict[str, list[str]],
                 scrape_seconds: float = SCRAPE_SECONDS):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": f"{scrape_seconds}s",
                             "scrape_timeout": f"{scrape_seconds}s",
                             "evaluation_interval": f"{scrape_seconds}s"},
                  "scrape_configs": [{"job_name": job,
                                      "static_configs": [{"targets": targets}]}
                                     for job, targets in sorted(jobs.items())]}
        # JSON is YAML: no YAML library needed.
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, 30, f"Prometheus at {self.url} to be ready")
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str) -> list[dict]:
        """An instant query through the HTTP API: the result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def prometheus(tmp_path):
    if not pathlib.Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed: make test-servers")
    started: list[Prometheus] = []

    def start(jobs: dict[str, list[str]]) -> Prometheus:
        started.append(Prometheus(tmp_path / f"prometheus-{len(started)}", jobs).start())
        return started[-1]
    yield start
    for server in started:
        server.stop()


def test_every_panel_query_returns_data_from_the_real_processes(
        config_file, names, start_listener, publisher, ws_server, clients, keystone,
        tmp_path, prometheus):
    listener_port, delivery_port = free_port(), free_port()
    set_options(config_file, "listener", f"status_port = {listener_port}")
    suffix = uuid.uuid4().hex[:8]
    # The operator's Zaqar is away (nothing listens there) and its pipeline holds:
    # its sink fails, the other pipelines deliver.
    write_pipelines(config_file, pipelines_ini(
        f"{names['zaqar']}-ops", f"q-{suffix}", f"{names['zaqar']}-{suffix}",
        ops_url=f"http://127.0.0.1:{free_port()}"))
    listener = start_listener()
    service = delivery_worker.build(load_conf(config_file), threading.Event(),
                                    status=("127.0.0.1", delivery_port)).start()
    try:
        validator = keystone.validator(tmp_path, cache_ttl=30)
        server = ws_server(types=[SERVER], validator=validator)
        server_prom = prometheus({
            "searchlight-forward-listener": [f"127.0.0.1:{listener_port}"],
            "searchlight-forward-delivery": [f"127.0.0.1:{delivery_port}"],
            "searchlight-forward-websocket": [f"127.0.0.1:{server.port}"]})

        # Listener outcomes: applied, duplicate (the same again), stale (older),
        # dead-lettered (no id: the plugin refuses it).
        image = str(uuid.uuid4())
        newer = image_payload(image_id=image, updated_at="2026-11-21T10:00:05Z")
        older = image_payload(image_id=image, updated_at="2026-11-21T10:00:01Z")
        no_id = {k: v for k, v in image_payload().items() if k != "id"}
        for count, payload in enumerate([newer, newer, older, no_id], start=1):
            publish_image(publisher, payload)
            wait_for(lambda: listener.processor.counters["notifications"] >= count, 30,
                     f"notification {count} to be processed")
        for _ in range(3):
            publish_image(publisher, image_payload(image_id=str(uuid.uuid4())))

        # WebSocket: one connection stays open and authenticated; the same token
        # again (a cache hit); a bad token (closed by the server).
        token = keystone.token("demo")
        member = clients(server.url)
        assert member.authenticate(token)["type"] == "authenticated"
        again = clients(server.url)
        assert again.authenticate(token)["type"] == "authenticated"
        bad = clients(server.url)
        bad.send({"action": "authenticate", "token": "garbage"})
        assert bad.close_code() == protocol.AUTH_FAILED

        targets = dashboard_targets()
        assert len(targets) >= 20

        # Bounded poll: a series appears once scraped twice within the rate window.
        deadline = time.monotonic() + 60
        while True:
            missing = [f"{title}: {substitute(expr)}" for title, expr in targets
                       if not server_prom.query(substitute(expr))]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not missing, "queries without a series after 60 s:\n" + "\n".join(missing)
    finally:
        service.stop()
