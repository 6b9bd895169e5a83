"""How fast Keystone tokens are validated, and how long a revoked token still
receives, on the local servers with the default settings.

    python3 scripts/servers.py up
    .venv/bin/python bench/keystone_auth.py [--tokens 50] [--revocations 3]

Prints:

* validation latency through ``KeystoneValidator``: uncached (each of N fresh
  tokens validated for the first time, and ``fresh=True`` re-checks of one token)
  and cached (the same token again);
* how long an open WebSocket connection keeps receiving after its token is revoked
  in Keystone (until the server closes it with 4006), over a few revocations, with
  the default ``token_recheck_interval`` and ``cache_ttl``;
* how long a new connection with the revoked token is still accepted (the cache).

Uses the real WebSocket server in this process, a real client and Elasticsearch
only for the server's tailer (no listener). Every wait is bounded.
"""
from __future__ import annotations

import json
import pathlib
import random
import statistics
import sys
import tempfile
import time
import uuid

import websockets
from tqdm import tqdm
from websockets.sync.client import connect

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forwarders.websocket import protocol  # noqa: E402
from devtools.websocket_thread import ServerThread  # noqa: E402
from forwarders.websocket.server import WebSocketServer, WebSocketSettings  # noqa: E402
from searchlight_forward import search  # noqa: E402
from bench import harness  # noqa: E402
from bench.harness import ES_URL, SEARCH_BACKEND  # noqa: E402
from devtools.keystone import LocalKeystone  # noqa: E402
from devtools.wsclient import close_code_of  # noqa: E402

SERVER = "OS::Nova::Server"


def percentiles(samples_ms: list[float]) -> str:
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return (f"p50 {statistics.median(samples_ms):8.3f} ms   p95 {q[94]:8.3f} ms   "
            f"max {max(samples_ms):8.3f} ms   (n={len(samples_ms)})")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def validation(ks: LocalKeystone, tmp: pathlib.Path, tokens: int) -> dict:
    validator = ks.validator(tmp)
    validator.validate(ks.token("demo"))              # service login and discovery
    issued = [ks.token("demo") for _ in tqdm(range(tokens), desc="issuing tokens",
                                             leave=False)]
    first = [timed(lambda t=t: validator.validate(t)) for t in issued]
    one = issued[0]
    fresh = [timed(lambda: validator.validate(one, fresh=True)) for _ in range(tokens)]
    cached = [timed(lambda: validator.validate(one)) for _ in range(tokens * 20)]
    return {"uncached, first sight": first, "uncached, fresh re-check": fresh,
            "cached": cached}


def authenticate(url: str, token: str):
    """(connection, first frame); the frame is {"type": "closed", "code": ...} when
    the server refused the token."""
    ws = connect(url, open_timeout=10, close_timeout=2, legacy=True)
    ws.send(json.dumps({"action": "authenticate", "token": token}))
    try:
        return ws, json.loads(ws.recv(timeout=10))
    except websockets.ConnectionClosed as exc:
        return ws, {"type": "closed", "code": exc.rcvd.code if exc.rcvd else None}


def revocation(ks: LocalKeystone, tmp: pathlib.Path, rounds: int) -> tuple[list, list]:
    settings = WebSocketSettings(port=0)
    server = WebSocketServer(search.connect(ES_URL, SEARCH_BACKEND, request_timeout=30),
                             f"sfb-ks-{uuid.uuid4().hex[:6]}", ks.validator(tmp), [SERVER],
                             settings=settings)
    thread = ServerThread(server).start()
    url = f"ws://127.0.0.1:{thread.port}"
    open_windows, new_windows = [], []
    try:
        for _ in tqdm(range(rounds), desc="revocations (up to "
                      f"{2 * settings.token_recheck_interval:g} s each)", leave=False):
            token = ks.token("demo")
            ws, hello = authenticate(url, token)
            assert hello["type"] == "authenticated", hello
            ws.send(json.dumps({"action": "subscribe", "resource_types": [SERVER]}))
            # Revoke at a random moment of the re-check cycle, as in real life.
            time.sleep(random.uniform(0, settings.token_recheck_interval))
            ks.revoke(token)
            revoked = time.monotonic()
            # New connections with the revoked token, until one is refused.
            while True:
                late, answer = authenticate(url, token)
                late.close()
                if answer["type"] != "authenticated":
                    new_windows.append(time.monotonic() - revoked)
                    break
                if time.monotonic() - revoked > 120:
                    raise SystemExit("a revoked token was still accepted after 120 s")
                time.sleep(0.2)
            code = close_code_of(ws, settings.token_recheck_interval + 30)
            if code != protocol.TOKEN_REVOKED:
                raise SystemExit(f"expected close 4006 after revocation, got {code}")
            open_windows.append(time.monotonic() - revoked)
    finally:
        thread.stop()
    return open_windows, new_windows


def main() -> int:
    parser = harness.arguments(__doc__, keep=False)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--revocations", type=int, default=4)
    args = harness.parse(parser)
    try:
        ks = LocalKeystone()
    except OSError as exc:
        raise SystemExit(f"no local Keystone ({exc}); run: python3 scripts/servers.py up")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sfb-ks-"))
    defaults = WebSocketSettings()
    print(f"Keystone {ks.auth_url}; defaults: cache_ttl 10 s, token_recheck_interval "
          f"{defaults.token_recheck_interval:g} s")
    for name, samples in validation(ks, tmp, args.tokens).items():
        print(f"  validation, {name:26s} {percentiles(samples)}")
    open_windows, new_windows = revocation(ks, tmp, args.revocations)
    print("  revoked token, open connection closed after:  "
          + ", ".join(f"{w:.1f} s" for w in open_windows))
    print("  revoked token, new connections accepted for:   "
          + ", ".join(f"{w:.1f} s" for w in new_windows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
