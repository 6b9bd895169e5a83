"""A private RabbitMQ node that a fault test may restart and kill (test tooling).

The shared broker of ``scripts/servers.py`` serves every test and a running demo;
a broker restart there would disturb them all. Fault tests and ``make faults`` run
their own node instead: the same ``RabbitMQ`` server definition, with its own
directory, node name, cookie, epmd and ports (``base_port`` .. ``base_port + 5``, all
on 127.0.0.1).

What a node on RabbitMQ 3.10 does that tests must allow for (measured):

* start takes 5-8 s (about 4.5 s of CPU), a graceful stop about 1 s;
* after a restart a quorum queue holds nothing until its member is leader again:
  ``start`` waits for every quorum queue's leader;
* a quorum queue declared within about 2 s of a SIGKILL may come back broken (Ra
  2.2 saves its registry lazily): ``kill`` flushes that registry first;
* acknowledgements sent just before a SIGKILL may be lost: those messages come back
  (at-least-once), so counts after a crash allow duplicates.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from devtools.local_servers import servers




# Every quorum queue of the node has a leader (one rabbitmqctl call that polls
# inside the node, up to ~TENTHS/10 s); prints the names still without one.
_QUORUM_PENDING = """
Leader = fun(V, N) ->
    case catch rabbit_quorum_queue:status(V, N) of
        L when is_list(L) ->
            lists:any(fun(M) -> lists:member({<<"Raft State">>, leader}, M) end, L);
        _ -> false
    end
end,
Pending = fun() ->
    [N || Q <- rabbit_amqqueue:list(), amqqueue:get_type(Q) =:= rabbit_quorum_queue,
          {resource, V, queue, N} <- [amqqueue:get_name(Q)], not Leader(V, N)]
end,
Wait = fun W(0) -> Pending();
           W(K) -> case Pending() of [] -> []; _ -> timer:sleep(100), W(K - 1) end
       end,
Wait(TENTHS)."""


class PrivateRabbitMQ:
    def __init__(self, directory, base_port: int, node: str = "sf-faults@localhost"):
        self.server = servers.RabbitMQ(Path(directory), base_port, node)
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        """oslo.messaging's transport URL."""
        return self.server.url

    @property
    def amqp_url(self) -> str:
        """kombu's."""
        return f"amqp://guest:guest@127.0.0.1:{self.server.port}//"

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        res = self.server.ctl(*args, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: "
                               f"{(res.stderr or res.stdout).strip()[-500:]}")
        return res.stdout

    def start(self) -> float:
        """Start on the data the directory holds (fresh if none); seconds until it
        takes logins and every quorum queue has a leader."""
        t0 = time.monotonic()
        self.server.up({})
        pending = self.rabbitmqctl("eval", _QUORUM_PENDING.replace("TENTHS", "300"),
                                   timeout=90).strip()
        if pending != "[]":
            raise RuntimeError(f"quorum queues without a leader after 30 s: {pending}")
        self.timings["start"] = time.monotonic() - t0
        return self.timings["start"]

    def stop(self) -> float:
        t0 = time.monotonic()
        running = self.server.running_pid()
        if running:
            servers.terminate(*running)        # SIGTERM: a clean broker shutdown
        self.server.pidfile.unlink(missing_ok=True)
        self.timings["stop"] = time.monotonic() - t0
        return self.timings["stop"]

    def kill(self) -> float:
        """SIGKILL the node and its helper processes (a crash)."""
        t0 = time.monotonic()
        running = self.server.running_pid()
        if running:
            try:   # see the module docstring: a quorum queue must survive the crash
                self.rabbitmqctl("eval", "dets:sync(ra_directory_reverse).", timeout=20)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            pid = running[0]
            tree = [pid, *_descendants(pid)]   # some run in sessions of their own
            for target in tree:
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while any(_alive(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.server.pidfile.unlink(missing_ok=True)
        self.timings["kill"] = time.monotonic() - t0
        return self.timings["kill"]

    def restart(self, crash: bool = False) -> float:
        t0 = time.monotonic()
        self.kill() if crash else self.stop()
        self.start()
        self.timings["restart"] = time.monotonic() - t0
        return self.timings["restart"]

    def close(self) -> None:
        """Stop the node and its epmd, and delete its directory."""
        try:
            self.stop()
        finally:
            if self.server.running_pid():
                self.kill()
            self.server.kill_epmd()
            shutil.rmtree(self.server.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
