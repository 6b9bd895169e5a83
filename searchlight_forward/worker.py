"""Long-running processes as OpenStack services run them: cotyledon workers.

A ``Worker`` builds its machinery (``start_work``: anything with ``stop()`` and
``stats_line()``), logs its counters every ``STATS_EVERY`` seconds, and on SIGTERM
stops it gracefully: cotyledon calls ``terminate`` and exits as soon as it returns,
so ``terminate`` waits for ``run`` to have stopped the work. A worker that dies is
replaced by cotyledon's service manager.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time

import cotyledon
from oslo_config import cfg

from searchlight_forward.retry import Stopping

LOG = logging.getLogger(__name__)


class StatusPortInUse(Exception):
    """A status port of this host is taken: the message says what to change."""


@dataclasses.dataclass(frozen=True)
class StatusPorts:
    """Where a process's workers serve their status endpoints: worker N on
    ``port + N`` (``port`` 0: none), configured as ``[section] status_port``."""
    host: str
    port: int
    section: str

    def bind(self, workers: int, command: str) -> list[socket.socket]:
        """Listening sockets for every worker, bound here in the master process
        before any worker starts, so that a second process started with the same
        configuration stops at once with a clear error (not workers crash-looping
        on ``Address already in use`` under a master that stays up doing nothing),
        and a replaced worker takes over its predecessor's socket."""
        if not self.port:
            return []
        sockets: list[socket.socket] = []
        for n in range(workers):
            port = self.port + n
            try:
                sockets.append(socket.create_server((self.host, port), backlog=64))
            except OSError as exc:
                for sock in sockets:
                    sock.close()
                raise StatusPortInUse(
                    f"the status port {self.host}:{port} (worker {n}: [{self.section}] "
                    f"status_port = {self.port}, + {n}) cannot be bound: {os.strerror(exc.errno) if exc.errno else exc}. "
                    f"Is another {command} running on this host with the same "
                    f"configuration? Run one process with [{self.section}] workers = N, "
                    f"or give each process its own [{self.section}] status_port, "
                    f"{workers} port(s) apart (a second --config-file that sets only "
                    f"that), or 0 for no status endpoint (docs/operations.md, "
                    f"\"Several processes on one host\")") from None
        return sockets


class Worker(cotyledon.Service):
    graceful_shutdown_timeout = 60
    STATS_EVERY = 30.0

    def __init__(self, worker_id: int, conf: cfg.ConfigOpts,
                 status_sockets: list[socket.socket] | None = None):
        super().__init__(worker_id)
        self.conf = conf
        self.stop_event = threading.Event()
        self.done = threading.Event()
        #: this worker's status endpoint socket, bound by the master (or None)
        self.status_socket = status_sockets[worker_id] if status_sockets else None

    def start_work(self):
        """Build and start what this worker runs; return it."""
        raise NotImplementedError

    def run(self) -> None:
        try:
            work = self.start_work()
            last = time.monotonic()
            while not self.stop_event.wait(1.0):
                if time.monotonic() - last >= self.STATS_EVERY:
                    last = time.monotonic()
                    LOG.info("stats: %s", work.stats_line())
            LOG.info("stopping %s", self.name)
            work.stop()
        except Stopping:
            pass
        finally:
            self.done.set()

    def terminate(self) -> None:
        self.stop_event.set()
        self.done.wait(self.graceful_shutdown_timeout)


def run_workers(worker: type[Worker], count: int, conf: cfg.ConfigOpts,
                status: StatusPorts | None = None) -> None:
    """``count`` processes of ``worker`` until SIGTERM or SIGINT. With ``status``,
    the workers' status sockets are bound first (``StatusPortInUse`` if one cannot
    be: nothing is started)."""
    sockets = status.bind(count, worker.name) if status is not None else []
    manager = cotyledon.ServiceManager()
    manager.add(worker, workers=count, args=(conf, sockets))
    manager.run()
