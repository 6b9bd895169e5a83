#!/usr/bin/env python3
"""Obtain, configure, start, check and stop the project's real servers.

Stdlib only: it runs before any virtualenv exists.

    python3 scripts/servers.py up [NAME ...]     # obtain + configure + start + wait ready
    python3 scripts/servers.py status            # exit 0 if all healthy, 3 otherwise
    python3 scripts/servers.py down [NAME ...]   # SIGTERM, up to 30 s, then SIGKILL
    python3 scripts/servers.py logs NAME [-n N]  # tail of the server's log(s)
    python3 scripts/servers.py env               # export lines for the tests

Servers: redis, rabbitmq, elasticsearch, opensearch, keystone, zaqar, horizon (Horizon 27 with the plugin in horizon-plugin/), haproxy (in front of the demo's two WebSocket servers).  Everything binds to 127.0.0.1.
All state (downloads, data, configs, logs, pid files) lives in <repo>/.state,
or in $SF_STATE_DIR.  Each server has <state>/<name>/<name>.log and
<state>/<name>/<name>.pid.  Keystone's users, passwords and ids for the tests
are in <state>/keystone/accounts.json (`env` prints its path).

Adding a server is one small subclass of Server (see the bottom of the
"servers" section) plus an entry in SERVERS.
"""

from __future__ import annotations

import argparse
import grp
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("SF_STATE_DIR") or (REPO / ".state")).resolve()
HOST = "127.0.0.1"

STOP_GRACE = 30.0          # seconds between SIGTERM and SIGKILL
LOG_TAIL = 40              # lines shown on failure
LOG_ROTATE_BYTES = 20 * 1024 * 1024

_print_lock = threading.Lock()
_apt_lock = threading.Lock()


def say(*args, **kw):
    with _print_lock:
        print(*args, **kw, flush=True)


class ServerError(Exception):
    """A server could not be obtained/started; carries the hint to show."""

    def __init__(self, msg, hint=None, show_log=True):
        super().__init__(msg)
        self.hint = hint
        self.show_log = show_log


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------

_children: dict[int, subprocess.Popen] = {}   # started by this invocation


def proc_start_time(pid: int) -> str | None:
    """Start time of pid (clock ticks since boot), None if gone or zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data.rsplit(")", 1)[1].split()
    if rest[0] in ("Z", "X"):               # zombie / dead
        return None
    return rest[19]                          # field 22 overall


def pid_alive(pid: int, start: str | None = None) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    st = proc_start_time(pid)
    if st is None:
        return False
    return start is None or st == start


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url_path: str, port: int, headers=None, timeout: float = 3.0):
    """GET http://127.0.0.1:port/url_path -> (status, body) or (None, error)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", url_path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc).encode()
    finally:
        conn.close()


def http_request(method: str, url_path: str, port: int, body=None, headers=None,
                 timeout: float = 10.0):
    """HTTP request to 127.0.0.1:port with an optional JSON body ->
    (status, response headers, body bytes), or (None, None, error bytes)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, url_path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, None, str(exc).encode()
    finally:
        conn.close()


def amqp_login(host: str, port: int, user: str, password: str, vhost: str = "/",
               timeout: float = 3.0) -> bool:
    """Full AMQP 0-9-1 connection open + close: proves the broker accepts user
    and password from this address (guest is loopback-only) and leaves no
    'client unexpectedly closed' warnings in the broker log."""
    import struct

    def frame(cls, meth, args=b""):
        payload = struct.pack(">HH", cls, meth) + args
        return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"

    def shortstr(v: bytes):
        return struct.pack(">B", len(v)) + v

    def read_method(sock):
        hdr = b""
        while len(hdr) < 7:
            chunk = sock.recv(7 - len(hdr))
            if not chunk:
                raise OSError("closed")
            hdr += chunk
        ftype, _chan, size = struct.unpack(">BHI", hdr)
        body = b""
        while len(body) < size + 1:
            chunk = sock.recv(size + 1 - len(body))
            if not chunk:
                raise OSError("closed")
            body += chunk
        if ftype != 1:
            return None, None, body
        cls, meth = struct.unpack(">HH", body[:4])
        return cls, meth, body[4:size]

    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            if read_method(s)[:2] != (10, 10):                      # Start
                return False
            response = b"\x00" + user.encode() + b"\x00" + password.encode()
            s.sendall(frame(10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN")
                            + struct.pack(">I", len(response)) + response
                            + shortstr(b"en_US")))                  # StartOk
            cls, meth, args = read_method(s)
            if (cls, meth) != (10, 30):                             # Tune (else Close)
                return False
            channel_max, frame_max, _hb = struct.unpack(">HIH", args[:8])
            s.sendall(frame(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
            s.sendall(frame(10, 40, shortstr(vhost.encode()) + shortstr(b"") + b"\x00"))
            if read_method(s)[:2] != (10, 41):                      # OpenOk
                return False
            s.sendall(frame(10, 50, struct.pack(">H", 200) + shortstr(b"bye")
                            + struct.pack(">HH", 0, 0)))            # Close
            read_method(s)                                          # CloseOk
            return True
    except (OSError, struct.error):
        return False


def tail(path: Path, n: int = LOG_TAIL) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-n:]


def log_header(log: Path, text: str):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {text} =====\n")


def run_logged(cmd, log: Path, timeout: float, env=None, cwd=None, what=None):
    """Run cmd to completion, appending its output to log. Raises on failure."""
    log_header(log, what or ("run: " + " ".join(map(str, cmd))))
    with open(log, "ab") as out:
        try:
            res = subprocess.run(list(map(str, cmd)), stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT,
                                 env=env, cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServerError(f"timed out after {timeout:.0f}s: "
                              f"{' '.join(map(str, cmd))}") from None
        except OSError as exc:
            raise ServerError(f"cannot run {cmd[0]}: {exc}") from exc
    if res.returncode != 0:
        raise ServerError(f"exit {res.returncode}: {' '.join(map(str, cmd))}")


def apt_install(packages: list[str], log: Path):
    """apt-get update + install, once at a time, without starting services."""
    if os.geteuid() != 0:
        raise ServerError(f"{' '.join(packages)} missing and not root",
                          f"install them: sudo apt-get install -y {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    with _apt_lock:
        # Keep the package from starting a system instance on the ports we use.
        made_policy = False
        if not policy.exists():
            policy.write_text("#!/bin/sh\n# temporary, scripts/servers.py\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
        try:
            run_logged(["apt-get", "update"], log, 600, env=env)
            run_logged(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                       log, 900, env=env)
        finally:
            if made_policy:
                policy.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# the common server machinery
# --------------------------------------------------------------------------

def demo_address(section: str, host_option: str, port_option: str,
                 default_port: str) -> tuple[str, str]:
    """Where a demo service listens: ``[section]`` host and port of
    etc/searchlight-forward.conf (scripts/demo.py starts it with that file), else the
    defaults; an address for every interface is reached on 127.0.0.1."""
    import configparser
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(REPO / "etc" / "searchlight-forward.conf")
    except configparser.Error:
        pass
    host = parser.get(section, host_option, fallback=HOST).strip()
    if host in ("", "0.0.0.0", "::"):
        host = HOST
    return host, parser.get(section, port_option, fallback=default_port).strip()


class Server:
    name = ""
    port = 0
    ports: tuple[int, ...] = ()       # ports that must be free to start (default: port)
    requires: tuple[str, ...] = ()    # servers that must be ready before start
    apt: dict[str, str] = {}          # binary -> Debian package, installed if missing
    ready_timeout = 60.0

    def __init__(self):
        self.dir = STATE / self.name
        self.log = self.dir / f"{self.name}.log"
        self.pidfile = self.dir / f"{self.name}.pid"

    # --- to override -----------------------------------------------------
    @property
    def url(self) -> str:
        raise NotImplementedError

    def env_exports(self) -> dict[str, str]:
        return {}

    def obtain(self) -> str | None:
        """Make the software available; return a note if something was done."""
        missing = sorted({pkg for binary, pkg in self.apt.items() if not shutil.which(binary)
                          and not Path(binary).exists()})
        if missing:
            apt_install(missing, self.log)
            return "apt-installed " + " ".join(missing)
        return None

    def configure(self):
        pass

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment, cwd of the foreground server process."""
        raise NotImplementedError

    def ready(self) -> bool:
        """One quick readiness probe."""
        raise NotImplementedError

    def after_ready(self):
        """Extra check run once after a fresh start became ready."""

    def stop(self, pid: int, start: str | None):
        terminate(pid, start)

    def hint(self) -> str:
        ports = "|".join(str(p) for p in (self.ports or (self.port,)))
        return (f"is a port taken? `ss -ltnp | grep -E ':({ports})\\b'`; "
                f"disk full? `df -h {STATE}`; full log: `{self.log}`")

    def extra_logs(self) -> list[Path]:
        return []

    # --- shared ----------------------------------------------------------
    def running_pid(self) -> tuple[int, str] | None:
        try:
            pid_s, _, start = self.pidfile.read_text().strip().partition(" ")
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        if pid_alive(pid, start or None):
            return pid, start
        return None

    def kill_leftovers(self):
        """The recorded leader died but members of its process group live on
        (e.g. the leader was kill -9'd): stop them so the ports are freed.
        Linux never reuses a pid that is still some group's id, so a live
        group with the recorded pgid is ours."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        if proc_start_time(pid) is None and _group_alive(pid):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    return True
                if _wait_gone(pid, None, pid, STOP_GRACE if sig == signal.SIGTERM else 10):
                    return True
        return False

    def spawn(self):
        argv, env, cwd = self.command()
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.log.exists() and self.log.stat().st_size > LOG_ROTATE_BYTES:
            self.log.replace(self.log.with_suffix(".log.1"))
        log_header(self.log, "start: " + " ".join(argv))
        out = open(self.log, "ab")
        try:
            proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServerError(f"cannot start {argv[0]}: {exc}") from exc
        finally:
            out.close()
        _children[proc.pid] = proc
        start = proc_start_time(proc.pid) or ""
        self.pidfile.write_text(f"{proc.pid} {start}\n")
        return proc.pid, start

    def wait_ready(self, timeout: float, pid: int | None = None, start: str | None = None):
        deadline = time.monotonic() + timeout
        while True:
            if self.ready():
                return
            if pid is not None and not pid_alive(pid, start):
                raise ServerError(f"{self.name} exited during start-up")
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not ready after {timeout:.0f}s")
            time.sleep(0.3)

    def up(self, ready_events: dict[str, threading.Event]) -> str:
        """Idempotent: returns what was done."""
        running = self.running_pid()
        if running:
            if self.ready():
                return f"already running (pid {running[0]})"
            self.wait_ready(self.ready_timeout, *running)
            return f"was starting, now ready (pid {running[0]})"
        notes = []
        if self.kill_leftovers():
            notes.append("killed leftovers of a dead instance")
        self.pidfile.unlink(missing_ok=True)
        note = self.obtain()
        if note:
            notes.append(note)
        for p in (self.ports or (self.port,)):
            if port_open(p):
                raise ServerError(f"port {p} is already in use by a process this script "
                                  f"did not start", f"who has it? `ss -ltnp | grep ':{p}\\b'`",
                                  show_log=False)
        self.configure()
        for dep in self.requires:
            ev = ready_events.get(dep)
            if ev is None:
                continue
            if not ev.wait(900):
                raise ServerError(f"{dep} (needed by {self.name}) never became ready")
            if getattr(ev, "failed", False):
                raise ServerError(f"{dep} (needed by {self.name}) failed to start")
        pid, start = self.spawn()
        try:
            self.wait_ready(self.ready_timeout, pid, start)
            self.after_ready()
        except ServerError:
            raise
        notes.append(f"started (pid {pid})")
        return ", ".join(notes)

    def down(self) -> str:
        running = self.running_pid()
        if not running:
            msg = "killed leftovers of a dead instance" if self.kill_leftovers() \
                else "not running"
            self.pidfile.unlink(missing_ok=True)
            return msg
        self.stop(*running)
        self.pidfile.unlink(missing_ok=True)
        return f"stopped (pid {running[0]})"

    def healthy(self) -> bool:
        return self.running_pid() is not None and self.ready()


def terminate(pid: int, start: str | None = None, grace: float = STOP_GRACE):
    """SIGTERM the process group of pid, wait up to grace s, then SIGKILL it."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    # Only signal the group if pid leads it (we start everything in a new session).
    target = (lambda s: os.killpg(pgid, s)) if pgid == pid else (lambda s: os.kill(pid, s))
    try:
        target(signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, start, pgid if pgid == pid else None, grace):
        return
    try:
        target(signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait_gone(pid, start, pgid if pgid == pid else None, 10)


def _group_alive(pgid: int) -> bool:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if rest[0] not in ("Z", "X") and int(rest[2]) == pgid:
            return True
    return False


def _wait_gone(pid, start, pgid, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None:
            child.poll()
        if not pid_alive(pid, start) and (pgid is None or not _group_alive(pgid)):
            return True
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

class Redis(Server):
    name = "redis"
    port = 6379
    apt = {"redis-server": "redis-server"}
    ready_timeout = 30.0

    @property
    def url(self):
        return f"redis://{HOST}:{self.port}"

    def env_exports(self):
        return {"SF_REDIS_URL": self.url}

    def configure(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        (self.dir / "redis.conf").write_text(f"""\
# written by scripts/servers.py
bind {HOST}
port {self.port}
protected-mode yes
daemonize no
supervised no
pidfile {self.dir / 'redis-native.pid'}
logfile ""
dir {self.dir / 'data'}
save 60 1
appendonly yes
appendfsync everysec
""")

    def command(self):
        return ([shutil.which("redis-server") or "redis-server", str(self.dir / "redis.conf")],
                dict(os.environ), self.dir)

    def ready(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class RabbitMQ(Server):
    """The shared broker; or, given a directory and a base port, a private node
    (fault tests restart and kill it: devtools/private_rabbitmq.py) whose every
    port is derived from the base: AMQP, distribution, its own epmd, rabbitmqctl."""
    name = "rabbitmq"
    port = 5672
    dist_port = 25672
    epmd_port = 14369        # our own epmd, so a system epmd on 4369 never collides
    ports = (5672, 25672)     # must be free; our epmd may legitimately outlive a node
    ctl_ports: tuple[int, int] | None = None   # rabbitmqctl's (default 35672-35682)
    node = "searchlight@localhost"
    apt = {"/usr/lib/rabbitmq/bin/rabbitmq-server": "rabbitmq-server"}
    ready_timeout = 120.0
    bindir = Path("/usr/lib/rabbitmq/bin")   # the real scripts, not Debian's su-wrapper

    def __init__(self, directory: Path | None = None, base_port: int | None = None,
                 node: str | None = None):
        super().__init__()
        if directory is not None:
            self.dir = Path(directory).resolve()
            self.log = self.dir / "rabbitmq.log"
            self.pidfile = self.dir / "rabbitmq.pid"
        if base_port is not None:
            self.port, self.dist_port, self.epmd_port = base_port, base_port + 1, base_port + 2
            self.ctl_ports = (base_port + 3, base_port + 5)
            self.ports = (self.port, self.dist_port)
        if node is not None:
            self.node = node

    @property
    def url(self):
        return f"rabbit://guest:guest@{HOST}:{self.port}/"

    def env_exports(self):
        return {"SF_TRANSPORT_URL": self.url}

    def hint(self):
        return (super().hint() + f"; epmd on {self.epmd_port}; a system broker running? "
                "`service rabbitmq-server status`")

    def rabbit_env(self) -> dict[str, str]:
        d = self.dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        env.update({
            "HOME": str(d / "home"),                     # Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": "-",                        # to stdout -> rabbitmq.log
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
            "RABBITMQ_CTL_ERL_ARGS": loopback,
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_CRASH_DUMP": str(d / "log" / "erl_crash.dump"),
        })
        if self.ctl_ports:
            env["RABBITMQ_CTL_DIST_PORT_MIN"] = str(self.ctl_ports[0])
            env["RABBITMQ_CTL_DIST_PORT_MAX"] = str(self.ctl_ports[1])
        return env

    def configure(self):
        d = self.dir
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cookie = d / "home" / ".erlang.cookie"
        if not cookie.exists():        # Erlang refuses a cookie others can read
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16).upper())
        (d / "rabbitmq-env.conf").write_text("# written by scripts/servers.py; env is set by it\n")
        (d / "enabled_plugins").write_text("[].\n")
        (d / "advanced.config").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(f"""\
# written by scripts/servers.py
listeners.tcp.1 = {HOST}:{self.port}
loopback_users.guest = true
default_user = guest
default_pass = guest
log.console = true
log.console.level = info
log.file = false
""")

    def command(self):
        return [str(self.bindir / "rabbitmq-server")], self.rabbit_env(), self.dir

    def ctl(self, *args, timeout=60.0):
        return subprocess.run([str(self.bindir / "rabbitmqctl"), "-n", self.node, *args],
                              env=self.rabbit_env(), cwd=str(self.dir),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def ready(self):
        return amqp_login(HOST, self.port, "guest", "guest")

    def after_ready(self):
        try:
            res = self.ctl("await_startup", "--timeout", "60", timeout=90)
        except subprocess.TimeoutExpired:
            raise ServerError("rabbitmqctl await_startup timed out") from None
        if res.returncode != 0:
            log_header(self.log, "rabbitmqctl await_startup failed")
            with open(self.log, "a") as f:
                f.write(res.stdout + res.stderr)
            raise ServerError("rabbitmqctl await_startup failed")
        # What oslo.messaging rejects from the demo's pool queue goes to the listener's
        # rejected queue, as docs/reliability.md asks of an operator.
        self.ctl("set_policy", "--apply-to", "queues", "searchlight-forward-rejected",
                 "^searchlight-forward$",
                 '{"dead-letter-exchange":"searchlight-forward.rejected"}')

    def stop(self, pid, start):
        try:
            res = self.ctl("stop", timeout=60)
            if res.returncode == 0:
                _wait_gone(pid, start, pid, STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
        terminate(pid, start)                  # no-op if already gone
        self.kill_epmd()

    def kill_epmd(self):
        epmd = shutil.which("epmd") or "epmd"
        if port_open(self.epmd_port):
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                           env=self.rabbit_env(), capture_output=True, timeout=15)

    def down(self):
        msg = super().down()
        self.kill_epmd()                       # also when the node was already gone
        return msg


class Elasticsearch(Server):
    """Elasticsearch from its integ-test zip; OpenSearch (below) is the same
    recipe with other names."""
    name = "elasticsearch"
    product = "elasticsearch"          # the zip's top folder, bin/ script and yml
    env_prefix = "ES"                  # ES_JAVA_HOME, ES_PATH_CONF, ES_TMPDIR
    port = 9200
    transport_port = 9300
    ports = (9200, 9300)
    version = os.environ.get("SF_ES_VERSION", "8.19.7")
    user = os.environ.get("SF_ES_USER", "searchlight-es")
    apt = {"java": "openjdk-17-jdk-headless", "mvn": "maven"}
    ready_timeout = 120.0
    artifact = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{v}:zip"
    extra_settings = "xpack.security.enabled: false\n"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def env_exports(self):
        return {"SF_ES_URL": self.url}

    @property
    def dist(self) -> Path:
        return self.dir / f"{self.product}-{self.version}"

    @property
    def executable(self) -> Path:
        return self.dist / "bin" / self.product

    def hint(self):
        return (super().hint() + f"; native logs in {self.dir / 'logs'}; "
                "JDK 17? `readlink -f $(which java)`")

    @staticmethod
    def m2_repo() -> Path:
        return Path(os.environ.get("SF_M2_REPO") or Path.home() / ".m2" / "repository")

    def zip_path(self) -> Path:
        group, artifact, _ = self.artifact.split(":", 2)
        return (self.m2_repo() / group.replace(".", "/") / artifact
                / self.version / f"{artifact}-{self.version}.zip")

    def java_home(self) -> str:
        if os.environ.get("SF_ES_JAVA_HOME"):
            return os.environ["SF_ES_JAVA_HOME"]
        java = shutil.which("java")
        if not java:
            raise ServerError("java not found",
                              "install a JDK: apt-get install openjdk-17-jdk-headless")
        return str(Path(java).resolve().parent.parent)

    def obtain(self):
        notes = [n for n in [super().obtain()] if n]
        if self.executable.exists():
            return ", ".join(notes) or None
        zp = self.zip_path()
        for attempt in (1, 2):
            if not zp.exists():
                run_logged(["mvn", "-q", "-B", "dependency:get",
                            f"-Dartifact={self.artifact.format(v=self.version)}",
                            "-Dtransitive=false", f"-Dmaven.repo.local={self.m2_repo()}"],
                           self.log, 900,
                           what=f"obtain: mvn dependency:get {self.product} {self.version}")
                notes.append(f"downloaded {self.product} {self.version}")
            try:
                self._unzip(zp)
                break
            except zipfile.BadZipFile:
                if attempt == 2:
                    raise ServerError(f"{zp} is not a valid zip") from None
                zp.unlink()
        notes.append("unpacked")
        return ", ".join(notes)

    def _unzip(self, zp: Path):
        tmp = self.dir / ".unpack"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(zp) as z:
            for info in z.infolist():
                path = z.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(path, mode)
        top = tmp / self.dist.name
        if not (top / "bin" / self.product).exists():
            raise ServerError(f"unexpected layout in {zp}")
        shutil.rmtree(self.dist, ignore_errors=True)
        top.rename(self.dist)
        shutil.rmtree(tmp, ignore_errors=True)

    def run_as_other_user(self) -> bool:
        return os.geteuid() == 0

    def ensure_user(self):
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            run_logged(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        self.user], self.log, 60, what=f"useradd {self.user}")

    def configure(self):
        d = self.dir
        if self.run_as_other_user():
            for parent in d.parents:
                if not parent.stat().st_mode & 0o001:
                    raise ServerError(f"{parent} is not searchable by user {self.user}",
                                      f"chmod o+x {parent}, or set SF_STATE_DIR elsewhere")
        conf = d / "config"
        if not conf.exists():
            shutil.copytree(self.dist / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (conf / f"{self.product}.yml").write_text(f"""\
# written by scripts/servers.py
cluster.name: searchlight-forward
node.name: sf-{self.name}
path.data: {d / 'data'}
path.logs: {d / 'logs'}
network.host: {HOST}
http.port: {self.port}
transport.port: {self.transport_port}
discovery.type: single-node
{self.extra_settings}cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
""")
        jvmd = conf / "jvm.options.d"
        jvmd.mkdir(exist_ok=True)
        (jvmd / "searchlight-forward.options").write_text("-Xms1g\n-Xmx1g\n")
        if self.run_as_other_user():
            self.ensure_user()
            pw = pwd.getpwnam(self.user)
            for sub in ("config", "data", "logs", "tmp"):
                # config: we (root) just wrote files there; the others only
                # need a walk the first time (ES creates its files as itself).
                if sub != "config" and (d / sub).stat().st_uid == pw.pw_uid:
                    continue
                for root, _dirs, files in os.walk(d / sub):
                    os.chown(root, pw.pw_uid, pw.pw_gid)
                    for f in files:
                        os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)

    def command(self):
        d = self.dir
        pre = self.env_prefix
        es_env = {
            f"{pre}_JAVA_HOME": self.java_home(),
            f"{pre}_PATH_CONF": str(d / "config"),
            f"{pre}_TMPDIR": str(d / "tmp"),
            "HOME": str(d),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }
        es_bin = str(self.executable)
        if self.run_as_other_user():
            argv = ["runuser", "-u", self.user, "--", "env", "-i",
                    *(f"{k}={v}" for k, v in es_env.items()), es_bin]
            env = dict(os.environ)
        else:
            argv, env = [es_bin], dict(os.environ, **es_env)
        return argv, env, d / "logs"        # cwd: gc.log and hs_err land in logs/

    def ready(self):
        status, body = http_get("/_cluster/health?wait_for_status=yellow&timeout=1s",
                                self.port, timeout=5)
        if status != 200:
            return False
        try:
            return json.loads(body).get("status") in ("yellow", "green")
        except ValueError:
            return False


class OpenSearch(Elasticsearch):
    """OpenSearch 2.19 (what Kolla-Ansible deploys) beside Elasticsearch, on
    9201/9301. Its integ-test zip holds only transport-netty4: no security
    plugin to disable (the setting is written anyway for a full distribution)."""
    name = "opensearch"
    product = "opensearch"
    env_prefix = "OPENSEARCH"
    port = 9201
    transport_port = 9301
    ports = (9201, 9301)
    version = os.environ.get("SF_OPENSEARCH_VERSION", "2.19.6")
    artifact = "org.opensearch.distribution.integ-test-zip:opensearch:{v}:zip"
    extra_settings = ""

    def configure(self):
        super().configure()
        # Its jvm.options name logs/ and data/ relative to the working folder
        # (logs/ here, so logs/logs/gc.log would not exist): make them absolute.
        jvm = self.dir / "config" / "jvm.options"
        text = jvm.read_text()
        for rel in ("logs/", "data"):
            text = text.replace(f"={rel}", f"={self.dir}/{rel}")
        jvm.write_text(text)
        if (self.dist / "plugins" / "opensearch-security").exists():
            with open(self.dir / "config" / "opensearch.yml", "a") as f:
                f.write("plugins.security.disabled: true\n")

    def env_exports(self):
        return {"SF_OPENSEARCH_URL": self.url}


class VenvServer(Server):
    """A server pip-installed into its own virtualenv <state>/<name>/venv.

    The venv is reused while its marker file records the same pip_spec and
    the entry point `venv_bin` exists."""
    pip_spec: list[str] = []
    dist_name = ""                    # distribution whose version is recorded
    venv_bin = ""                     # venv/bin/<venv_bin> must exist

    @property
    def venv(self) -> Path:
        return self.dir / "venv"

    def hint(self):
        return super().hint() + f"; broken venv? `rm -rf {self.venv}` and retry"

    def installed_version(self) -> str:
        marker = self.venv / ".sf-installed"
        try:
            return marker.read_text().split("\n")[1].split()[1]
        except (OSError, IndexError):
            return ""

    def obtain(self):
        marker = self.venv / ".sf-installed"
        want = " ".join(self.pip_spec)
        if marker.exists() and marker.read_text().split("\n", 1)[0] == want \
                and (self.venv / "bin" / self.venv_bin).exists():
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.venv / "bin" / "python").exists():
            run_logged([sys.executable, "-m", "venv", self.venv], self.log, 300,
                       what="obtain: venv")
        py = self.venv / "bin" / "python"
        run_logged([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *self.pip_spec], self.log, 900, what="obtain: pip install " + want)
        version = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; "
             f"print(m.version({self.dist_name!r}))"],
            capture_output=True, text=True).stdout.strip()
        marker.write_text(f"{want}\n{self.dist_name} {version}\n")
        return f"pip-installed {self.dist_name} {version}"


class Zaqar(VenvServer):
    name = "zaqar"
    port = 8888
    requires = ("redis",)
    ready_timeout = 60.0
    # 23.x is the newest series; it runs on Python 3.11.  The dependency caps
    # are the majors this was verified with.
    pip_spec = ["zaqar[redis]==23.0.*", "falcon<5", "redis<9", "SQLAlchemy<2.2"]
    dist_name = "zaqar"
    venv_bin = "zaqar-server"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def env_exports(self):
        return {"SF_ZAQAR_URL": self.url}

    def hint(self):
        return super().hint() + "; is redis up? `python3 scripts/servers.py status`"

    def configure(self):
        redis = f"redis://{HOST}:{Redis.port}"
        (self.dir / "zaqar.conf").write_text(f"""\
# written by scripts/servers.py
[DEFAULT]
auth_strategy =
debug = false
use_stderr = true

[drivers]
transport = wsgi
message_store = redis
management_store = redis

[drivers:transport:wsgi]
bind = {HOST}
port = {self.port}

[drivers:message_store:redis]
uri = {redis}

[drivers:management_store:redis]
uri = {redis}

[storage]
# only needed for webhook subscriptions; harmless otherwise
message_pipeline = zaqar.notification.notifier

[profiler]
enabled = false
# osprofiler builds a notifier even when disabled; its default messaging://
# needs oslo.messaging (not installed) and logs an ERROR traceback at start.
connection_string = {redis}
""")

    def command(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        return ([str(self.venv / "bin" / "zaqar-server"),
                 "--config-file", str(self.dir / "zaqar.conf")], env, self.dir)

    def ready(self):
        headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "test"}
        status, _ = http_get("/v2/ping", self.port, headers=headers)
        return status is not None and 200 <= status < 300


class Keystone(VenvServer):
    """Keystone 30 under waitress (scripts/keystone_launcher.py), SQLite DB and
    fernet/credential/receipt key repositories in <state>/keystone.  A new
    state is db_synced, keyed and bootstrapped once (configure); the test
    projects and users are then made once through the API (after_ready) and
    written to accounts.json.  Restarts reuse DB and keys.  Every `up`, even of
    a running Keystone, makes sure the catalog has searchlight-forward-api as
    Searchlight was registered (ensure_catalog)."""
    name = "keystone"
    port = 5000
    ready_timeout = 90.0
    # 30.0.0 is the newest release; verified on Python 3.11 with the
    # dependency majors capped here (pip otherwise takes whatever is newest).
    pip_spec = ["keystone==30.0.*", "waitress==3.0.*", "SQLAlchemy>=2,<2.2", "oslo.db<19",
                "oslo.policy<7", "Flask<4", "Werkzeug<4", "bcrypt<6", "cryptography<51"]
    dist_name = "keystone"
    venv_bin = "keystone-manage"
    threads = 8
    region = "RegionOne"
    # searchlight-forward-api in the catalog, as Searchlight's devstack plugin
    # registered Searchlight: python-searchlightclient and `openstack search`
    # look up service type "search".  Its URL is the demo's API address.
    search_service = {"type": "search", "name": "searchlight",
                      "description": "Searchlight v1 search API (searchlight-forward-api)"}
    search_interfaces = ("public", "internal")
    domain, domain_id = "Default", "default"
    # account key -> (user name, project name, role).  Fixed local passwords:
    # the server binds 127.0.0.1 only.  admin/admin/admin comes from bootstrap.
    accounts = {
        "admin": ("admin", "admin", "admin"),
        "service": ("searchlight-forward", "service", "service"),
        "demo": ("demo", "demo", "member"),
        "demo-reader": ("demo-reader", "demo", "reader"),
        "alt": ("alt", "alt-demo", "member"),
        "alt-reader": ("alt-reader", "alt-demo", "reader"),
    }
    key_repos = {                      # keystone-manage command -> directory
        "fernet_setup": "fernet-keys",
        "credential_setup": "credential-keys",
        # MFA receipts; Keystone exits at start without keys.  fernet_setup
        # fills this one too, so receipt_setup only runs if it did not.
        "receipt_setup": "receipt-keys",
    }

    @staticmethod
    def password(user: str) -> str:
        return f"{user}-sf-local"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}/v3"

    @property
    def conf(self) -> Path:
        return self.dir / "keystone.conf"

    @property
    def accounts_file(self) -> Path:
        return self.dir / "accounts.json"

    def env_exports(self):
        return {"SF_KEYSTONE_URL": self.url, "SF_KEYSTONE_ACCOUNTS": str(self.accounts_file)}

    def hint(self):
        return (super().hint() + f"; `{self.venv}/bin/keystone-manage --config-file "
                f"{self.conf} doctor`; start over (users, keys and DB are lost): "
                f"`python3 scripts/servers.py down keystone; rm -rf {self.dir}/keystone.db "
                f"{self.dir}/.sf-bootstrapped {self.accounts_file}`")

    def ks_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.conf)
        return env

    def manage(self, *args, timeout: float = 300):
        run_logged([self.venv / "bin" / "keystone-manage", "--config-file", self.conf, *args],
                   self.log, timeout, env=self.ks_env(), cwd=self.dir,
                   what=f"configure: keystone-manage {args[0]}")

    def configure(self):
        d = self.dir
        for sub in self.key_repos.values():
            (d / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.conf.write_text(f"""\
# written by scripts/servers.py
[DEFAULT]
debug = false
use_stderr = true

[database]
connection = sqlite:///{d / 'keystone.db'}

[token]
provider = fernet
# the default; a test wanting a short-lived token uses an application
# credential (or trust) with expires_at: its tokens are capped to it
expiration = 3600

[fernet_tokens]
key_repository = {d / self.key_repos['fernet_setup']}

[fernet_receipts]
key_repository = {d / self.key_repos['receipt_setup']}

[credential]
key_repository = {d / self.key_repos['credential_setup']}

[identity]
# bcrypt's minimum: password logins in tests take ms instead of ~0.25 s
password_hash_rounds = 4
# bcrypt's real limit; a larger value logs a warning on every password check
max_password_length = 72

[cache]
# In-process cache (one Keystone process, so it stays coherent: revoking a
# token, disabling a user or removing a role gives 404 at once).  Without it
# every token validation runs ~480 SQL queries: ~330 ms instead of ~5 ms.
# (oslo_cache.dict works the same but logs an ERROR: no memcache module.)
enabled = true
backend = dogpile.cache.memory
""")
        marker = d / ".sf-bootstrapped"
        version = self.installed_version()
        done = marker.read_text().strip() if marker.exists() else None
        if done == version:
            return                      # state exists: reuse DB and keys
        # New state (or a Keystone upgrade): everything below is idempotent.
        self.manage("db_sync")
        if done is None:
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            for cmd, sub in self.key_repos.items():
                if not any((d / sub).iterdir()):
                    self.manage(cmd, "--keystone-user", user, "--keystone-group", group)
            self.manage("bootstrap", "--bootstrap-password", self.password("admin"),
                        "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                        "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                        "--bootstrap-region-id", self.region,
                        "--bootstrap-public-url", self.url)
            self.accounts_file.unlink(missing_ok=True)     # provisioned again after start
        marker.write_text(version + "\n")

    def command(self):
        return ([str(self.venv / "bin" / "python"), str(REPO / "scripts" / "keystone_launcher.py"),
                 "--host", HOST, "--port", str(self.port), "--threads", str(self.threads)],
                self.ks_env(), self.dir)

    def ready(self):
        status, _ = http_get("/v3", self.port)
        return status == 200

    # --- accounts, made once through the API after bootstrap -------------
    def api(self, method, path, token=None, body=None, expect=(200,), headers=None):
        hdrs = dict(headers or {})
        if token:
            hdrs["X-Auth-Token"] = token
        status, resp_headers, data = http_request(method, "/v3" + path, self.port, body, hdrs)
        if status not in expect:
            raise ServerError(f"keystone {method} /v3{path}: {status} "
                              f"{data[:300].decode('utf-8', 'replace')}")
        return resp_headers, (json.loads(data) if data else {})

    def login(self, user: str, project: str) -> tuple[str, dict]:
        """Password login scoped to project -> (token id, token body)."""
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": self.domain_id},
                "password": self.password(user)}}},
            "scope": {"project": {"name": project, "domain": {"id": self.domain_id}}}}}
        headers, data = self.api("POST", "/auth/tokens", body=body, expect=(201,))
        return headers["X-Subject-Token"], data["token"]

    def _find(self, token, collection, name) -> str | None:
        _, data = self.api("GET", f"/{collection}?name={name}&domain_id={self.domain_id}",
                           token)
        found = data[collection]
        return found[0]["id"] if found else None

    def provision(self):
        admin_token, _ = self.login("admin", "admin")
        _, data = self.api("GET", "/roles", admin_token)
        role_ids = {r["name"]: r["id"] for r in data["roles"]}
        project_ids = {}
        for _user, project, _role in self.accounts.values():
            if project in project_ids:
                continue
            pid = self._find(admin_token, "projects", project)
            if pid is None:
                _, data = self.api("POST", "/projects", admin_token, expect=(201,), body={
                    "project": {"name": project, "domain_id": self.domain_id,
                                "description": "searchlight-forward test project"}})
                pid = data["project"]["id"]
            project_ids[project] = pid
        result = {"auth_url": self.url, "region": self.region, "domain": self.domain,
                  "domain_id": self.domain_id, "projects": project_ids, "users": {}}
        for key, (user, project, role) in self.accounts.items():
            uid = self._find(admin_token, "users", user)
            if uid is None:
                _, data = self.api("POST", "/users", admin_token, expect=(201,), body={
                    "user": {"name": user, "password": self.password(user),
                             "domain_id": self.domain_id,
                             "default_project_id": project_ids[project]}})
                uid = data["user"]["id"]
            elif user != "admin":                 # left over from a half-done run
                self.api("PATCH", f"/users/{uid}", admin_token, expect=(200,),
                         body={"user": {"password": self.password(user)}})
            self.api("PUT", f"/projects/{project_ids[project]}/users/{uid}/roles/"
                     f"{role_ids[role]}", admin_token, expect=(204,))
            _, token = self.login(user, project)  # proves the password and the roles
            result["users"][key] = {
                "name": user, "password": self.password(user), "user_id": uid,
                "domain": self.domain, "domain_id": self.domain_id,
                "project": project, "project_id": project_ids[project],
                "roles": [role],
                "effective_roles": sorted(r["name"] for r in token["roles"]),
            }
        # The service user must be allowed to validate other users' tokens.
        service_token, _ = self.login(*self.accounts["service"][:2])
        demo_token, _ = self.login(*self.accounts["demo"][:2])
        self.api("GET", "/auth/tokens", service_token, headers={"X-Subject-Token": demo_token})
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.accounts_file)

    # --- the catalog: searchlight-forward-api as service type "search" ------
    @staticmethod
    def search_url() -> str:
        """The demo's searchlight-forward-api: [subscriptions] api_host and
        api_port of etc/searchlight-forward.conf (scripts/demo.py starts the API
        with it), else their defaults."""
        host, port = demo_address("subscriptions", "api_host", "api_port", "8785")
        return f"http://{host}:{port}"

    def ensure_catalog(self) -> str:
        """Idempotent: exactly one service of type search named searchlight, with
        exactly one public and one internal endpoint in our region at search_url();
        anything else of that service is removed (services of type search with
        other names, e.g. a test run's own, are left alone).  Returns what changed."""
        admin_token, _ = self.login("admin", "admin")
        want = self.search_service
        _, data = self.api("GET", f"/services?type={want['type']}", admin_token)
        ours = [s for s in data["services"] if s.get("name") == want["name"]]
        done = []
        if not ours:
            _, created = self.api("POST", "/services", admin_token, expect=(201,),
                                  body={"service": {**want, "enabled": True}})
            service = created["service"]
            done.append("service created")
        else:
            service = ours[0]
            for extra in ours[1:]:                 # e.g. two half-done runs at once
                self.api("DELETE", f"/services/{extra['id']}", admin_token, expect=(204,))
                done.append("duplicate service removed")
            if not service.get("enabled", True) or \
                    service.get("description") != want["description"]:
                self.api("PATCH", f"/services/{service['id']}", admin_token, body={
                    "service": {"enabled": True, "description": want["description"]}})
                done.append("service updated")
        url = self.search_url()
        _, data = self.api("GET", f"/endpoints?service_id={service['id']}", admin_token)
        endpoints = list(data["endpoints"])
        for interface in self.search_interfaces:
            same = [e for e in endpoints
                    if e["interface"] == interface and e.get("region_id") == self.region]
            if same:
                keep = same[0]
                endpoints.remove(keep)
                if keep["url"] != url or not keep.get("enabled", True):
                    self.api("PATCH", f"/endpoints/{keep['id']}", admin_token, body={
                        "endpoint": {"url": url, "enabled": True}})
                    done.append(f"{interface} endpoint updated")
            else:
                self.api("POST", "/endpoints", admin_token, expect=(201,), body={
                    "endpoint": {"service_id": service["id"], "interface": interface,
                                 "region_id": self.region, "url": url, "enabled": True}})
                done.append(f"{interface} endpoint created")
        for extra in endpoints:                    # other regions or interfaces, duplicates
            self.api("DELETE", f"/endpoints/{extra['id']}", admin_token, expect=(204,))
            done.append(f"{extra['interface']} endpoint in {extra.get('region_id')} removed")
        return ", ".join(done)

    def after_ready(self):
        try:
            provisioned = json.loads(self.accounts_file.read_text()).get("auth_url") == self.url
        except (OSError, ValueError):
            provisioned = False
        if not provisioned:
            self.provision()
        self.ensure_catalog()

    def up(self, ready_events):
        was_running = self.running_pid() is not None
        what = super().up(ready_events)
        if was_running:                 # after_ready runs on a fresh start only; a
            changed = self.ensure_catalog()   # running one's catalog may be older
            if changed:
                what += f"; catalog: {changed}"
        return what


class Horizon(VenvServer):
    """Horizon 27 with searchlight-forward's plugin (horizon-plugin/, installed
    editable), served by waitress with its static files collected and compressed
    offline (scripts/horizon_launcher.py), logging in against the local Keystone.
    Settings go where an operator puts them: the venv's
    openstack_dashboard/local/local_settings.py, the plugin's enabled files copied
    to local/enabled/ and its settings snippet to local/local_settings.d/.  This one
    serves the demo, its live tables on the demo's WebSocket servers through
    HAProxy (below; without HAProxy, the one server); tests start
    their own from the same venv (devtools/horizon.py), pointed at their own
    WebSocket server through SF_HORIZON_WEBSOCKET_URL."""
    name = "horizon"
    port = 8770
    requires = ("keystone", "haproxy")      # its live tables go through HAProxy
    ready_timeout = 90.0
    # 27.0.0 brings Django 5.2; WhiteNoise serves what collectstatic gathered.
    pip_spec = ["horizon==27.0.0", "waitress==3.0.*", "whitenoise==6.*",
                "-e", str(REPO / "horizon-plugin")]
    dist_name = "horizon"
    venv_bin = "django-admin"
    plugin = REPO / "horizon-plugin" / "searchlight_forward_dashboard"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def env_exports(self):
        return {"SF_HORIZON_URL": self.url}

    @property
    def static_root(self) -> Path:
        return self.dir / "static"

    def local_dir(self) -> Path:
        found = sorted(self.venv.glob("lib/python*/site-packages/openstack_dashboard/local"))
        if not found:
            raise ServerError("Horizon's openstack_dashboard/local is missing from "
                              f"{self.venv}", f"`rm -rf {self.venv}` and run up again")
        return found[0]

    @staticmethod
    def websocket_url() -> str:
        """The demo's WebSocket servers through HAProxy's frontend (HAProxy below, in
        front of the two scripts/demo.py starts); without HAProxy installed, the
        one of etc/searchlight-forward.conf's [websocket] host and port, else defaults."""
        if Path(HAProxy.binary).exists():
            return HAProxy().url
        host, port = demo_address("websocket", "host", "port", "8765")
        return f"ws://{host}:{port}/"

    def secret_key(self) -> str:
        path = self.dir / "secret_key"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def configure(self):
        local = self.local_dir()
        (local / "local_settings.py").write_text(f"""\
# written by scripts/servers.py: Horizon for the demo and the tests, on 127.0.0.1
import os

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = {self.secret_key()!r}
OPENSTACK_HOST = "127.0.0.1"
OPENSTACK_KEYSTONE_URL = "http://{HOST}:{Keystone.port}/v3"
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "member"
# Sessions in the process's memory: one waitress process per Horizon here.
CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}}
STATIC_ROOT = {str(self.static_root)!r}
COMPRESS_OFFLINE = True
""")
        for old in (local / "enabled").glob("_6*_searchlight_forward_*.py"):
            old.unlink()
        for enabled in (self.plugin / "enabled").glob("_6*.py"):
            shutil.copy(enabled, local / "enabled" / enabled.name)
        (local / "enabled" / "_6999_searchlight_forward_demo_default_panels.py").unlink(
            missing_ok=True)
        (local / "local_settings.d" / "_6000_searchlight_forward.py").write_text(f"""\
# written by scripts/servers.py from the plugin's _6000_searchlight_forward.py.example
import os

SEARCHLIGHT_FORWARD = {{
    "websocket_url": os.environ.get("SF_HORIZON_WEBSOCKET_URL", {self.websocket_url()!r}),
    "session_check_interval": int(os.environ.get("SF_HORIZON_SESSION_CHECK", "30")),
    "revoke_token_on_logout": True,
    # None: the catalog's search service (the demo's API, registered by up)
    "search_url": os.environ.get("SF_HORIZON_SEARCH_URL") or None,
}}
# This Horizon has no Nova: the Overview panel a login lands on would refuse
# everyone, so a login lands on the live instances.
HORIZON_CONFIG["user_home"] = WEBROOT + "project/live_instances/"
""")
        self.collect_static()

    def collect_static(self):
        """collectstatic and compress, again only when what they read changed."""
        import hashlib
        digest = hashlib.sha256(self.installed_version().encode())
        for path in sorted(self.plugin.rglob("*")):
            if path.is_file() and path.suffix in (".js", ".scss", ".html", ".py"):
                digest.update(path.name.encode() + path.read_bytes())
        stamp = self.dir / "static.stamp"
        if stamp.exists() and stamp.read_text() == digest.hexdigest() \
                and self.static_root.exists():
            return
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "openstack_dashboard.settings",
               "PYTHONWARNINGS": "ignore"}
        admin = self.venv / "bin" / "django-admin"
        run_logged([admin, "collectstatic", "--noinput", "--clear", "-v0"], self.log, 300,
                   env=env, cwd=self.dir, what="configure: collectstatic")
        run_logged([admin, "compress", "--force"], self.log, 300, env=env, cwd=self.dir,
                   what="configure: compress")
        stamp.write_text(digest.hexdigest())

    def command(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(DJANGO_SETTINGS_MODULE="openstack_dashboard.settings",
                   PYTHONWARNINGS="ignore")
        return ([str(self.venv / "bin" / "python"), str(REPO / "scripts" / "horizon_launcher.py"),
                 "--port", str(self.port)], env, self.dir)

    def ready(self):
        status, _ = http_get("/auth/login/", self.port)
        return status == 200


class HAProxy(Server):
    """HAProxy (Debian's) in front of several WebSocket servers: the demo's two
    (scripts/demo.py starts them on 8765 and 8767) behind 127.0.0.1:8766; or, given a
    directory, a port and backends, a private one (devtools/haproxy.py, the failover
    test).  In the foreground (-db), one config file, a stats socket for waits; the
    configuration is explained in docs/websocket.md, "Several servers behind HAProxy".
    Backends that are not running are simply DOWN: HAProxy is ready when its frontend
    accepts connections and its stats socket answers."""
    name = "haproxy"
    port = 8766
    backends: tuple[tuple[str, int], ...] = ((HOST, 8765), (HOST, 8767))
    binary = "/usr/sbin/haproxy"
    apt = {binary: "haproxy"}
    ready_timeout = 20.0
    tag_backend = False           # tests: the handshake answer names its backend

    def __init__(self, directory: Path | None = None, port: int | None = None,
                 backends=None, tag_backend: bool = False):
        super().__init__()
        if directory is not None:
            self.dir = Path(directory).resolve()
            self.log = self.dir / "haproxy.log"
            self.pidfile = self.dir / "haproxy.pid"
        if port is not None:
            self.port = port
        if backends is not None:
            self.backends = tuple((h, int(p)) for h, p in backends)
        self.tag_backend = tag_backend

    @property
    def url(self):
        return f"ws://{HOST}:{self.port}/"

    @property
    def config_file(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def stats_socket(self) -> Path:
        return self.dir / "haproxy.sock"

    def config(self) -> str:
        """The whole configuration (docs/websocket.md shows and explains it)."""
        servers = "".join(f"    server ws{i} {h}:{p} check\n"
                          for i, (h, p) in enumerate(self.backends, 1))
        tag = ("    # tests: which backend a client landed on\n"
               "    http-response set-header X-Backend-Server %[srv_name]\n"
               if self.tag_backend else "")
        return f"""\
# written by scripts/servers.py: WebSocket servers behind HAProxy (docs/websocket.md)
global
    # two descriptors a connection (client and server side): within a 20,000 limit
    maxconn 8000
    stats socket {self.stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    # after the 101 Switching Protocols: a WebSocket lives as long as it is used;
    # the servers ping every 20 s ([websocket] ping_interval), so only dead ones idle
    timeout tunnel 1h
    timeout client-fin 10s
    # a connection refused by a dead server is retried on another one
    retries 3
    option redispatch 1

frontend websocket
    bind {HOST}:{self.port}
    option forwardfor
    default_backend websocket_servers

backend websocket_servers
    # long-lived connections: the next one goes to the server with the fewest
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host {HOST}
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1
{tag}{servers}"""

    def configure(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        check = subprocess.run([self.binary, "-c", "-q", "-f", str(self.config_file)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise ServerError(f"haproxy -c refused {self.config_file}: "
                              f"{(check.stderr or check.stdout).strip()[-500:]}",
                              show_log=False)

    def command(self):
        self.stats_socket.unlink(missing_ok=True)
        return [self.binary, "-db", "-f", str(self.config_file)], dict(os.environ), self.dir

    def stat(self) -> list[dict[str, str]]:
        """`show stat` over the stats socket: one dict per frontend/backend/server
        row (pxname, svname, status, scur, ...); [] if it does not answer."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.stats_socket))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return []
        lines = data.decode(errors="replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            return []
        header = lines[0][2:].split(",")
        return [dict(zip(header, line.split(","))) for line in lines[1:] if line]

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers by name (ws1, ws2, ...): status, scur, ..."""
        return {row["svname"]: row for row in self.stat()
                if row.get("pxname") == "websocket_servers"
                and row.get("svname") not in ("BACKEND", "FRONTEND")}

    def ready(self):
        return port_open(self.port) and bool(self.stat())


SERVERS: dict[str, Server] = {s.name: s for s in (Redis(), RabbitMQ(), Elasticsearch(),
                                                     OpenSearch(), Keystone(), Zaqar(),
                                                     Horizon(), HAProxy())}
ORDER = list(SERVERS)          # start order; down goes in reverse


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------

def select(names: list[str], with_deps: bool) -> list[Server]:
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        sys.exit(f"unknown server(s): {', '.join(unknown)}; known: {', '.join(ORDER)}")
    chosen = set(names or ORDER)
    if with_deps:
        todo = list(chosen)
        while todo:
            for dep in SERVERS[todo.pop()].requires:
                if dep not in chosen:
                    chosen.add(dep)
                    todo.append(dep)
    return [SERVERS[n] for n in ORDER if n in chosen]


_held_locks = []


def state_lock():
    """Serialise up/down of concurrent invocations (e.g. parallel test runs);
    held until the process exits."""
    import fcntl
    STATE.mkdir(parents=True, exist_ok=True)
    f = open(STATE / ".lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    _held_locks.append(f)


def installed(package: str) -> bool:
    """Is this Debian package installed?"""
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                         capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.endswith(" installed")


def cmd_up(names, packages=()):
    servers = select(names, with_deps=True)
    state_lock()
    t_all = time.monotonic()
    # One apt transaction for everything missing (dpkg takes one lock anyway),
    # with the packages the caller needs beside the servers (the tests' peers).
    missing = sorted({pkg for s in servers for b, pkg in s.apt.items()
                      if not shutil.which(b) and not Path(b).exists()}
                     | {pkg for pkg in packages if not installed(pkg)})
    if missing:
        t0 = time.monotonic()
        try:
            apt_install(missing, STATE / "apt.log")
        except ServerError as exc:
            say(f"apt-get install {' '.join(missing)} failed: {exc}")
            for line in tail(STATE / "apt.log"):
                say("    " + line)
            say(f"hint: check network/apt sources; full log {STATE / 'apt.log'}")
            return 1
        say(f"{'apt':<14} installed {' '.join(missing)}  {time.monotonic() - t0:.1f}s")

    events = {s.name: threading.Event() for s in servers}
    failures: dict[str, ServerError] = {}

    def worker(s: Server):
        t0 = time.monotonic()
        try:
            what = s.up(events)
            say(f"{s.name:<14} {what}  {time.monotonic() - t0:.1f}s")
        except ServerError as exc:
            failures[s.name] = exc
            events[s.name].failed = True
            say(f"{s.name:<14} FAILED: {exc}  {time.monotonic() - t0:.1f}s")
        except Exception as exc:  # noqa: BLE001 - report, never hang the others
            failures[s.name] = ServerError(f"{type(exc).__name__}: {exc}")
            events[s.name].failed = True
            say(f"{s.name:<14} FAILED: {type(exc).__name__}: {exc}  "
                f"{time.monotonic() - t0:.1f}s")
        finally:
            events[s.name].set()

    threads = [threading.Thread(target=worker, args=(s,), name=s.name) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        for name, exc in failures.items():
            s = SERVERS[name]
            if exc.show_log:
                say(f"\n--- last {LOG_TAIL} lines of {s.log} ---")
                for line in tail(s.log):
                    say(line)
            say(f"--- {name}: {exc}")
            say(f"hint: {exc.hint or s.hint()}")
        return 1
    say(f"{'all':<14} ready  {time.monotonic() - t_all:.1f}s")
    return 0


def cmd_down(names):
    servers = select(names, with_deps=False)
    state_lock()
    rc = 0
    lock = threading.Lock()

    def worker(s):
        nonlocal rc
        t0 = time.monotonic()
        try:
            what = s.down()
        except Exception as exc:  # noqa: BLE001
            with lock:
                rc = 1
            what = f"FAILED: {type(exc).__name__}: {exc}"
        say(f"{s.name:<14} {what}  {time.monotonic() - t0:.1f}s")

    # Stop consumers of a server before it (zaqar before redis); others in parallel.
    dependents = [s for s in servers if s.requires]
    rest = [s for s in servers if not s.requires]
    for group in (dependents, rest):
        threads = [threading.Thread(target=worker, args=(s,)) for s in reversed(group)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return rc


def cmd_status(_names):
    rows = [("NAME", "PID", "URL", "HEALTHY")]
    all_ok = True
    for s in SERVERS.values():
        running = s.running_pid()
        ok = running is not None and s.ready()
        all_ok &= ok
        rows.append((s.name, str(running[0]) if running else "-", s.url, "yes" if ok else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0 if all_ok else 3


def cmd_logs(name, n):
    if name not in SERVERS:
        sys.exit(f"unknown server: {name}; known: {', '.join(ORDER)}")
    s = SERVERS[name]
    shown = False
    for path in [s.log, *s.extra_logs()]:
        if path.exists():
            print(f"==> {path} <==")
            for line in tail(path, n):
                print(line)
            shown = True
    if not shown:
        print(f"no log yet at {s.log}")
        return 1
    return 0


def cmd_env(_names):
    for s in SERVERS.values():
        for k, v in s.env_exports().items():
            print(f"export {k}={v}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=f"servers: {', '.join(ORDER)}\nstate:   {STATE}\n")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="obtain, configure, start and wait for servers (default all)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--packages", nargs="+", default=[], metavar="PKG",
                   help="Debian packages to install too, if missing, in the same apt "
                        "transaction (make test: the browser, rsyslog, Prometheus)")
    p = sub.add_parser("down", help="stop servers (default all)")
    p.add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("status", help="table of servers; exit 0 if all healthy, 3 otherwise")
    sub.add_parser("env", help="print export lines for the server URLs")
    p = sub.add_parser("logs", help="print the tail of a server's log")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", type=int, default=100, help="lines (default 100)")
    p = sub.add_parser("rabbitmqctl", help="run rabbitmqctl against our node "
                       "(e.g. list_queues name messages)")
    p.add_argument("ctl_args", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.cmd == "rabbitmqctl":
        rabbit = SERVERS["rabbitmq"]
        return subprocess.call([str(rabbit.bindir / "rabbitmqctl"), "-n", rabbit.node,
                                *args.ctl_args], env=rabbit.rabbit_env(), cwd=str(rabbit.dir))
    if args.cmd == "up":
        return cmd_up(args.names, args.packages)
    if args.cmd == "down":
        return cmd_down(args.names)
    if args.cmd == "status":
        return cmd_status([])
    if args.cmd == "logs":
        return cmd_logs(args.name, args.n)
    return cmd_env([])


if __name__ == "__main__":
    sys.exit(main())
