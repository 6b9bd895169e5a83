"""Two WebSocket server processes behind HAProxy (issue 28, item 3): kill -9 one of
them while a writer keeps changing resources, and every client it held comes back
through HAProxy to the other within 10 s, resumes by its cursor (no full resync),
misses nothing and never sees a resource older than it had.

The servers are real ``searchlight-forward-websocket`` processes on the test's own
resource group and ports; HAProxy is Debian's, private to the test
(devtools/haproxy.py, the configuration of scripts/servers.py). Each client knows
its backend from the handshake's ``X-Backend-Server`` header, so the test checks
that clients really were on the killed server (and only those were cut off).

``SF_FAILOVER_CLIENTS`` (default 20) sets the number of clients; the figures
(kill to every client resumed, max and p50) are printed and written to
``$SF_FAILOVER_RESULTS`` when set (docs/benchmarks.md, "WebSocket failover behind
HAProxy").
"""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import threading
import time
import urllib.error
import urllib.request

import pytest
import websockets
from websockets.sync.client import connect

from devtools.haproxy import PrivateHAProxy
from devtools.net import free_port
from tests.functional.conftest import WEBSOCKET_PIPELINE, wait_for, write_pipelines
from tests.functional.websocket_support import A, B, SERVER, document_change, es_view, matches

CLIENTS = int(os.environ.get("SF_FAILOVER_CLIENTS", "20"))
BACK_WITHIN = 10.0                 # seconds from the kill to every client resumed
# token, all_projects, (role copy, project) whose state the client must end with
TOKENS = [("tok-a", False, ("user", A)), ("tok-a2", False, ("user", A)),
          ("tok-b", False, ("user", B)), ("tok-admin", True, ("admin", None))]

pytestmark = pytest.mark.skipif(not shutil.which("haproxy") and
                                not os.path.exists("/usr/sbin/haproxy"),
                                reason="HAProxy missing: make test-servers installs it")


class FailoverClient(threading.Thread):
    """A client that does what docs/websocket.md asks: keep per resource the highest
    version, store the cursor of each change, and on a lost connection reconnect,
    authenticate and subscribe with that cursor."""

    def __init__(self, url: str, token: str, all_projects: bool, stop: threading.Event):
        super().__init__(daemon=True, name=f"client-{token}")
        self.url, self.token, self.all_projects, self.stop = url, token, all_projects, stop
        self.lock = threading.Lock()
        self.view: dict[tuple, dict] = {}
        self.versions: dict[tuple, int] = {}
        self.cursor: str | None = None
        self.older: list = []             # (key, had, got): a version below one seen
        self.resent: list = []            # (key, version): a version seen before
        self.errors: list = []            # error frames, unexpected frames
        self.backends: list[str] = []     # HAProxy's backend of each connection
        self.resumes: list[tuple[float, dict, str | None]] = []   # (when, frame, cursor sent)
        self.drops: list[float] = []      # when an established connection was lost
        self.changes = 0

    def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            established = False
            try:
                with connect(self.url, open_timeout=5, close_timeout=2, compression=None,
                             additional_headers={"X-Auth-Token": self.token}) as ws:
                    established = True
                    attempt = 0
                    self._session(ws)
            except (websockets.ConnectionClosed, websockets.InvalidHandshake, OSError,
                    TimeoutError) as exc:
                if self.stop.is_set():
                    return
                if established:
                    with self.lock:
                        self.drops.append(time.monotonic())
                else:
                    self.errors.append(f"connect: {type(exc).__name__}: {exc}")
            # a client's reconnect backoff (docs/websocket.md, "Clients"), not a test wait
            attempt += 1
            self.stop.wait(min(1.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))

    def _session(self, ws) -> None:
        with self.lock:
            self.backends.append(ws.response.headers.get("X-Backend-Server"))
            cursor = self.cursor
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] != "authenticated":
            self.errors.append(frame)
            return
        ws.send(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                            "all_projects": self.all_projects, "cursor": cursor}))
        while not self.stop.is_set():
            try:
                frame = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            if frame["type"] == "change":
                self._apply(frame)
            elif frame["type"] == "resumed":
                with self.lock:
                    self.cursor = frame["cursor"] or self.cursor
                    self.resumes.append((time.monotonic(), frame, cursor))
            elif frame["type"] != "token_expiring":
                self.errors.append(frame)

    def _apply(self, frame: dict) -> None:
        env = frame["envelope"]
        key = (env["resource_type"], env["id"])
        with self.lock:
            had = self.versions.get(key, 0)
            if env["version"] < had:
                self.older.append((key, had, env["version"]))
            elif env["version"] == had:
                self.resent.append((key, had))
            else:
                self.versions[key] = env["version"]
                self.view[key] = env
            self.cursor = frame["cursor"]
            self.changes += 1

    def snapshot(self):
        """A copy of the view for ``matches`` (it reads ``.view``)."""
        with self.lock:
            copy = FailoverClient.__new__(FailoverClient)
            copy.view = dict(self.view)
            return copy


class Writer(threading.Thread):
    """Keeps changing Nova servers of projects A and B through the Indexer (and the
    doorbell), before, during and after the kill: each round creates a resource
    (written once, so a change missed is missing for good), updates four of the
    older ones and now and then deletes one. ``kill(fn)``: the writer runs ``fn``
    (the kill -9) between two rounds and at once writes two more, so some changes
    are made while the killed server's clients are cut off and must reach them
    through the other server."""

    def __init__(self, write, stop: threading.Event):
        super().__init__(daemon=True, name="writer")
        self.write, self.stop = write, stop
        self.version = time.time_ns()
        self.rounds = 0
        self.written = 0                        # changes, in rounds of run()
        self.started = self.ended = 0.0
        self.created: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self._kill = None
        self.killed = threading.Event()
        self.killed_at = 0.0
        self.during_outage: list[str] = []     # resources created right after the kill

    def kill(self, fn) -> None:
        self._kill = fn

    def next_version(self) -> int:
        self.version += 1000
        return self.version

    def round(self) -> None:
        n = self.rounds
        project = A if n % 2 else B
        rid = f"failover-{n:05d}"
        batch = [document_change(rid, project, self.next_version(), status="BUILD")]
        self.created.append((rid, project))
        for old, old_project in random.sample(self.created[:-1],
                                              min(4, len(self.created) - 1)):
            batch.append(document_change(old, old_project, self.next_version(),
                                         status=random.choice(["ACTIVE", "SHUTOFF"])))
        if n % 10 == 9:
            old, old_project = self.created[n - 5]
            batch.append(document_change(old, old_project, self.next_version(),
                                         deleted=True))
        self.write.changes(batch)
        self.rounds += 1
        self.written += len(batch)

    def run(self) -> None:
        self.started, self.written = time.monotonic(), 0
        try:
            while not self.stop.is_set():
                if self._kill is not None:
                    fn, self._kill = self._kill, None
                    self.killed_at = time.monotonic()
                    fn()
                    for _ in range(2):
                        self.round()
                        self.during_outage.append(self.created[-1][0])
                    self.killed.set()
                self.round()
                self.stop.wait(0.05)          # the pace: about 10 rounds (50 changes) a second
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended = time.monotonic()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def test_kill_one_of_two_servers_behind_haproxy_every_client_resumes_by_cursor(
        config_file, tokens, writer, processes, es, names, tmp_path):
    write_pipelines(config_file, WEBSOCKET_PIPELINE)
    ports = {"ws1": free_port(), "ws2": free_port()}
    servers = {}
    for name, port in ports.items():
        conf = tmp_path / f"{name}.conf"      # beside tokens.json and forwarders.ini
        conf.write_text(config_file.read_text() + f"""
[websocket]
port = {port}
auth = token_file
token_file = {tokens.name}
""")
        servers[name] = processes("websocket", conf, name)
    writer_stop, clients_stop = threading.Event(), threading.Event()
    load = Writer(writer, writer_stop)
    load.round()                               # the index exists, with something in it
    for name, port in ports.items():
        wait_for(lambda: ready(port) or servers[name].proc.poll() is not None, 60,
                 f"{name}'s /readyz")
        assert servers[name].proc.poll() is None, servers[name].log()[-3000:]

    proxy = PrivateHAProxy(tmp_path / "haproxy", [("127.0.0.1", p) for p in ports.values()])
    clients: list[FailoverClient] = []
    try:
        proxy.start()
        proxy.wait_backends({"ws1": "UP", "ws2": "UP"})
        load.start()
        for i in range(CLIENTS):
            token, all_projects, _ = TOKENS[i % len(TOKENS)]
            clients.append(FailoverClient(proxy.url, token, all_projects, clients_stop))
            clients[-1].start()
        wait_for(lambda: all(c.resumes for c in clients), 60, "every client's first resume")
        on = {name: [c for c in clients if c.backends == [name]] for name in ports}
        assert sum(map(len, on.values())) == CLIENTS, [c.backends for c in clients]
        victim = max(on, key=lambda name: len(on[name]))
        survivor = next(name for name in ports if name != victim)
        # Not vacuous: HAProxy balanced the clients, and both servers hold some.
        assert on[victim] and on[survivor], {n: len(c) for n, c in on.items()}
        # Live changes flow to everyone before the kill.
        before = {id(c): c.changes for c in clients}
        wait_for(lambda: all(c.changes > before[id(c)] for c in clients), 30,
                 "a live change at every client")

        load.kill(servers[victim].kill9)
        wait_for(load.killed.is_set, 10, "the writer to kill and write on")
        killed_at = load.killed_at
        wait_for(lambda: all(len(c.resumes) >= 2 for c in on[victim]), 3 * BACK_WITHIN,
                 f"the clients of the killed {victim} to resume")
        back = sorted(c.resumes[1][0] - killed_at for c in on[victim])
        # HAProxy's view then: was the dead server already marked down, and how many
        # connections did it send there and retry on the other (redispatch)?
        at_back = proxy.backends()[victim]
        dropped = sorted(c.drops[0] - killed_at for c in on[victim])
        proxy.wait_backends({victim: "DOWN"}, timeout=10)

        # The writes go on after every client is back; then they stop.
        rounds = load.rounds
        wait_for(lambda: load.rounds >= rounds + 15, 30, "writes after the failover")
        writer_stop.set()
        load.join(10)
        assert load.error is None, load.error

        # Every client ends with exactly Elasticsearch's state of what it may see.
        for client in clients:
            role, project = next(t[2] for t in TOKENS if t[0] == client.token)
            expected = es_view(es, names["group"], role, project, types=[SERVER])
            deadline = time.monotonic() + 30
            while (problems := matches(client.snapshot(), expected)) \
                    and time.monotonic() < deadline:
                time.sleep(0.2)               # a bounded poll: the client still reads
            assert problems == [], (client.token, len(problems), sorted(problems)[:5])
    finally:
        clients_stop.set()
        writer_stop.set()
        for client in clients:
            client.join(5)
        proxy.stop()

    for client in clients:
        assert client.older == [], (client.token, client.older[:5])
        assert client.resent == [], (client.token, client.resent[:5])
        assert client.errors == [], (client.token, client.errors[:5])
    for client in on[survivor]:
        assert client.drops == [] and len(client.resumes) == 1, client.backends
    for client in clients:                  # (also part of matching Elasticsearch)
        assert any(("OS::Nova::Server", rid) in client.view
                   for rid in load.during_outage), client.token
    for client in on[victim]:
        assert client.backends[:2] == [victim, survivor], client.backends
        (_, first, sent_first), (_, again, sent_again) = client.resumes[:2]
        assert sent_first is None and first["full"] is True
        # Resumed by its cursor: not a full resync, from the last change it had.
        assert sent_again is not None and again["full"] is False, (sent_again, again)
    assert back[-1] <= BACK_WITHIN, back
    assert servers[survivor].proc.poll() is None

    figures = {"clients": CLIENTS, "on_killed_server": len(on[victim]),
               "drop_seen_max_s": round(dropped[-1], 3),
               "resumed_max_s": round(back[-1], 3),
               "resumed_p50_s": round(statistics.median(back), 3),
               "writer_changes_per_s": round(load.written / (load.ended - load.started), 1),
               "haproxy_status_when_back": at_back.get("status"),
               "redispatched": int(at_back.get("wredis") or 0),
               "resumed_changes": sum(c.resumes[1][1]["count"] for c in on[victim]),
               "changes_received": sum(c.changes for c in clients),
               "missed": 0, "older": 0, "resent": 0}
    print("\nfailover behind HAProxy:", json.dumps(figures))
    if os.environ.get("SF_FAILOVER_RESULTS"):
        with open(os.environ["SF_FAILOVER_RESULTS"], "w") as f:
            json.dump(figures, f, indent=1)
