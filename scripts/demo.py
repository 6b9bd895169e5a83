"""The main job on the embedded default (`make demo`).

Brings up the local servers (done by `make`), creates the indices, starts the
listener, the delivery service and two WebSocket servers (8765 from `etc/`, 8767
from an extra configuration file; HAProxy of scripts/servers.py balances them on
8766) on the shipped `etc/` configuration and pipelines, and a generator
(devtools/) that publishes a realistic stream for three projects the way the services' oslo_messaging.Notifier does. Prints where to look, and on Ctrl-C stops everything it
started and the local servers.

Horizon 27 with the plugin (started by ``scripts/servers.py up`` on 127.0.0.1:8770)
shows the live tables: log in as one of the printed users. The WebSocket server
validates the Horizon session's Keystone tokens against the local Keystone, and the
generator publishes for Keystone's demo projects. ``--auth token_file`` (``make demo
AUTH=token_file``): the demo token file instead, for scripted WebSocket clients
(Horizon's tables then cannot log in); ``--print-token USER`` prints a Keystone token.

``--search opensearch`` (``make demo SEARCH=opensearch``): every process uses the
local OpenSearch (127.0.0.1:9201) instead of Elasticsearch, through an extra
configuration file written to ``.state/demo/search.conf``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import kombu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSPORT_URL = os.environ.get("SF_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
PAGE = "http://127.0.0.1:8765/"        # the WebSocket server (/status, /metrics)
SECOND_WEBSOCKET_PORT = 8767           # the second one, behind HAProxy with the first
HAPROXY = "ws://127.0.0.1:8766/"       # scripts/servers.py's HAProxy in front of both
HORIZON = "http://127.0.0.1:8770/"     # scripts/servers.py's Horizon
SEARCH_URLS = {"elasticsearch": "http://127.0.0.1:9200", "opensearch": "http://127.0.0.1:9201"}
TOKENS = os.path.join(ROOT, "etc", "websocket-tokens.json")
STATE = os.environ.get("SF_STATE_DIR") or os.path.join(ROOT, ".state")
ACCOUNTS = os.environ.get("SF_KEYSTONE_ACCOUNTS") or os.path.join(STATE, "keystone",
                                                                  "accounts.json")
KEYSTONE_USERS = (("demo", "member of demo"), ("alt", "member of alt-demo"),
                  ("demo-reader", "reader of demo (no Admin dashboard)"),
                  ("admin", "admin: Admin > Live shows every project"))


def wait_until(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise SystemExit(f"demo: {what} did not come up in {seconds:.0f}s; see .state/demo/*.log")


def queue_declared(name: str) -> bool:
    with kombu.Connection(TRANSPORT_URL.replace("rabbit://", "amqp://", 1)) as conn:
        conn.channel().queue_declare(name, passive=True)
        return True


def keystone_accounts() -> dict:
    try:
        with open(ACCOUNTS) as f:
            return json.load(f)
    except OSError as exc:
        raise SystemExit(f"demo: no Keystone accounts ({exc}); start the local servers: "
                         "python3 scripts/servers.py up") from None


def keystone_token(accounts: dict, user: str) -> str:
    """A project-scoped token, as Horizon would hold one (keystoneauth1)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    u = accounts["users"][user]
    auth = v3.Password(auth_url=accounts["auth_url"], username=u["name"],
                       password=u["password"], user_domain_id=u["domain_id"],
                       project_id=u["project_id"])
    return session.Session(auth=auth, timeout=30).get_token()


def keystone_setup(accounts: dict) -> tuple[str, str, str]:
    """(extra config file for the WebSocket server, generator project ids, what to
    tell the user about tokens)."""
    return private_file("keystone.conf", f"""# written by scripts/demo.py --auth keystone
[websocket]
auth = keystone

[websocket_keystone]
{service_credentials(accounts)}"""), *keystone_tokens(accounts)


def service_credentials(accounts: dict) -> str:
    """keystoneauth1 options for the local Keystone's service user."""
    service = accounts["users"]["service"]
    return "".join(f"{k} = {v}\n" for k, v in (
        ("auth_type", "password"), ("auth_url", accounts["auth_url"]),
        ("username", service["name"]), ("password", service["password"]),
        ("project_id", service["project_id"]), ("user_domain_id", service["domain_id"])))


def keystone_tokens(accounts: dict) -> tuple[str, str]:
    """(generator project ids, the Horizon logins to print)."""
    projects = accounts["projects"]
    project_ids = (f"demo={projects['demo']},alt_demo={projects['alt-demo']},"
                   f"admin={projects['admin']}")
    lines = [f"{accounts['users'][user]['name']:12} {accounts['users'][user]['password']:22}"
             f" {what}" for user, what in KEYSTONE_USERS]
    logins = ("Log in (user, password):\n                "
              + "\n                ".join(lines))
    return project_ids, logins


def api_setup(accounts: dict) -> str:
    """An extra config file for the subscriptions API and the delivery service: the
    API validates tokens as the local service user, and endpoints on this machine
    (127.0.0.1, http) are allowed so that a local receiver can subscribe."""
    return private_file("subscriptions.conf", f"""# written by scripts/demo.py
[subscriptions]
allowed_networks = 127.0.0.1/32
allow_http = true

[keystone_authtoken]
www_authenticate_uri = {accounts['auth_url']}
interface = public
{service_credentials(accounts)}""")


def private_file(name: str, text: str) -> str:
    """Write ``text`` (it holds a password) readable by us only; its path."""
    path = os.path.join(STATE, "demo", name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM (kill, a supervisor) stops everything like Ctrl-C does; SIGINT is set
    # explicitly because a shell starting this in the background ignores it.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=os.path.join(ROOT, "etc",
                                                              "searchlight-forward.conf"))
    parser.add_argument("--rate", type=float, default=10.0,
                        help="notifications per second from the generator")
    parser.add_argument("--keep-servers", action="store_true",
                        help="leave the local servers running on exit")
    parser.add_argument("--search", choices=tuple(SEARCH_URLS), default="elasticsearch",
                        help="the search server every process uses (both are started "
                             "by scripts/servers.py up)")
    parser.add_argument("--auth", choices=("token_file", "keystone"), default="keystone",
                        help="what opens the WebSocket: the demo token file or real "
                             "tokens of the local Keystone")
    parser.add_argument("--print-openrc", metavar="USER",
                        help="print export lines of USER's local Keystone credentials "
                             "(for searchlight-forward-subscriptions) and exit")
    parser.add_argument("--print-token", metavar="USER",
                        help="print a fresh Keystone token for USER (demo, demo-reader, "
                             "alt, alt-reader, admin) and exit")
    args = parser.parse_args()
    if args.print_openrc:
        accounts = keystone_accounts()
        u = accounts["users"][args.print_openrc]
        print(f"export OS_AUTH_URL={accounts['auth_url']} OS_USERNAME={u['name']} "
              f"OS_PASSWORD={u['password']} OS_PROJECT_ID={u['project_id']} "
              f"OS_USER_DOMAIN_ID={u['domain_id']}")
        return 0
    if args.print_token:
        print(keystone_token(keystone_accounts(), args.print_token))
        return 0
    bindir = os.path.dirname(sys.executable)
    logs = os.path.join(ROOT, ".state", "demo")
    os.makedirs(logs, exist_ok=True)
    search_url = SEARCH_URLS[args.search]
    search_conf = os.path.join(logs, "search.conf")
    with open(search_conf, "w") as f:
        f.write(f"# written by scripts/demo.py --search {args.search}\n"
                f"[elasticsearch]\nbackend = {args.search}\nhosts = {search_url}\n")
    base_conf = ["--config-file", args.config_file, "--config-file", search_conf]
    websocket_conf = list(base_conf)
    api_conf = [*base_conf, "--config-file", api_setup(keystone_accounts())]
    delivery_conf = api_conf
    if args.auth == "keystone":
        extra, project_ids, token_help = keystone_setup(keystone_accounts())
        websocket_conf += ["--config-file", extra]
    else:
        tokens = json.load(open(TOKENS))
        project_ids = (f"demo={tokens['demo-member-token']['project_id']},"
                       f"alt_demo={tokens['alt-reader-token']['project_id']},"
                       f"admin={tokens['admin-token']['project_id']}")
        token_help = ("tokens: demo-member-token (member of demo),\n"
                      "                alt-reader-token (reader of alt_demo), admin-token "
                      "(admin; can\n                show all projects). Demo tokens only: "
                      "etc/websocket-tokens.json.")
    started = time.monotonic()
    procs: list[subprocess.Popen] = []

    def run(name, *argv, **kw):
        command = [os.path.join(bindir, name)] if name.startswith("searchlight") \
            else [sys.executable, "-m", name]
        proc = subprocess.Popen([*command, *argv], cwd=ROOT, **kw)
        procs.append(proc)
        return proc

    try:
        subprocess.run([os.path.join(bindir, "searchlight-forward-manage"), *base_conf,
                        "create"], check=True)
        run("searchlight-forward-listener", *base_conf,
            "--log-file", os.path.join(logs, "listener.log"))
        run("searchlight-forward-delivery", *delivery_conf,
            "--log-file", os.path.join(logs, "delivery.log"))
        run("searchlight-forward-websocket", *websocket_conf,
            "--log-file", os.path.join(logs, "websocket.log"))
        # A second one on the same group, behind HAProxy with the first (kill either:
        # its clients resume on the other; docs/websocket.md).
        second_conf = os.path.join(logs, "websocket-2.conf")
        with open(second_conf, "w") as f:
            f.write("# written by scripts/demo.py: the second WebSocket server\n"
                    f"[websocket]\nport = {SECOND_WEBSOCKET_PORT}\n")
        run("searchlight-forward-websocket", *websocket_conf, "--config-file", second_conf,
            "--log-file", os.path.join(logs, "websocket-2.log"))
        run("searchlight-forward-api", *api_conf,
            "--log-file", os.path.join(logs, "api.log"))
        wait_until(lambda: queue_declared("searchlight-forward"), 60, "the listener")
        wait_until(lambda: urllib.request.urlopen(PAGE + "status", timeout=2), 60,
                   "the WebSocket server")
        wait_until(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{SECOND_WEBSOCKET_PORT}/status", timeout=2), 60,
            "the second WebSocket server")
        run("devtools.generate", *base_conf,
            "--rate", str(args.rate), "--project-ids", project_ids, "--quiet",
            stderr=open(os.path.join(logs, "generator.log"), "w"))
        print(f"""
searchlight-forward is running on {args.search} (up in {time.monotonic() - started:.0f}s); a generator
publishes {args.rate:g} notifications/s for three projects.

  Horizon:      {HORIZON}  (live tables: Project > Live, Admin > Live)
                {token_help}
  Telco queue:  .venv/bin/searchlight-forward-telco-consumer --project ops \\
                  --queue openstack-resources   (Zaqar at http://127.0.0.1:8888;
                  alerts: --queue openstack-error)
  WebSocket:    {HAPROXY}  (HAProxy in front of {PAGE.replace("http", "ws")} and
                ws://127.0.0.1:{SECOND_WEBSOCKET_PORT}/; Horizon's tables connect through it)
  Search:       curl '{search_url}/searchlight-search/_search?q=status:ACTIVE&pretty'
  Subscribe:    export SF_API_URL=http://127.0.0.1:8785
                eval $(.venv/bin/python scripts/demo.py --print-openrc demo)
                .venv/bin/searchlight-forward-subscriptions create --protocol webhook \\
                  --endpoint http://127.0.0.1:9000/hook   (docs/subscriptions.md)
  Counters:     curl http://127.0.0.1:8790/status    (listener)
                curl http://127.0.0.1:8791/status    (delivery: every pipeline's cursor)
  Logs:         {logs}/ (delivery.log has one line per delivered change)

Ctrl-C stops the generator, the listener, the delivery service, the WebSocket servers,
the subscriptions API and the local servers.
""", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        failed = [p.args[0] for p in procs if p.poll() is not None]
        print(f"demo: {', '.join(map(os.path.basename, failed))} exited; "
              f"see {logs}/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C (or the terminal's, sent to the whole group) must not cut
        # the clean-up short and leave the services running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep_servers:
            subprocess.run(["python3", os.path.join(ROOT, "scripts", "servers.py"), "down"])


if __name__ == "__main__":
    sys.exit(main())
