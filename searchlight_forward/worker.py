"""Long-running processes as OpenStack services run them: cotyledon workers.

A ``Worker`` builds its machinery (``start_work``: anything with ``stop()`` and
``stats_line()``), logs its counters every ``STATS_EVERY`` seconds, and on SIGTERM
stops it gracefully: cotyledon calls ``terminate`` and exits as soon as it returns,
so ``terminate`` waits for ``run`` to have stopped the work. A worker that dies is
replaced by cotyledon's service manager.
"""
from __future__ import annotations

import logging
import threading
import time

import cotyledon
from oslo_config import cfg

from searchlight_forward.retry import Stopping

LOG = logging.getLogger(__name__)


class Worker(cotyledon.Service):
    graceful_shutdown_timeout = 60
    STATS_EVERY = 30.0

    def __init__(self, worker_id: int, conf: cfg.ConfigOpts):
        super().__init__(worker_id)
        self.conf = conf
        self.stop_event = threading.Event()
        self.done = threading.Event()

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


def run_workers(worker: type[Worker], count: int, conf: cfg.ConfigOpts) -> None:
    """``count`` processes of ``worker`` until SIGTERM or SIGINT."""
    manager = cotyledon.ServiceManager()
    manager.add(worker, workers=count, args=(conf,))
    manager.run()
