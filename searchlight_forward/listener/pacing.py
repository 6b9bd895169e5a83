"""How long the listener lets a batch fill: twice what recent batches took, not a fixed wait.

oslo.messaging's batch poll hands over a batch when ``batch_size`` messages have
arrived or its timeout has run out. With a fixed timeout, a notification waits half
of it on average whenever notifications are scarce: at 200/s, 100 ms of a 160 ms
publish-to-searchable delay went there (docs/benchmarks.md). A short fixed timeout
cuts that wait but makes many small bulks, and at 500/s Elasticsearch spent its CPU
on bulk requests instead of documents.

So the timeout follows the cost of a batch, as the announcer's pause follows the
cost of a refresh: ``BATCH_COST_FACTOR`` times the recent batches' processing time
(plugins, Elasticsearch reads and writes), between ``[listener] min_batch_timeout``
and ``batch_timeout``. While Elasticsearch answers quickly a notification waits a
few milliseconds for its batch; as it slows, batches grow and bulk requests become
fewer; a full batch never waits.
"""
from __future__ import annotations

import threading
from typing import Callable

BATCH_COST_FACTOR = 2.0
SMOOTHING = 0.2      # weight of the newest batch in the mean processing time


def batch_window(processing: float, least: float, most: float) -> float:
    """Seconds a batch may wait to fill after batches that took ``processing`` s."""
    return min(most, max(least, BATCH_COST_FACTOR * processing))


class BatchPacer:
    """Keeps the batch poll's timeout at ``batch_window`` of the mean processing time;
    ``apply(seconds)`` sets it when it changes. It starts at the shortest (``window``:
    the poll's first timeout). Thread-safe."""

    def __init__(self, least: float, most: float, apply: Callable[[float], None]):
        self.least, self.most = min(least, most), most     # a fixed wait if least >= most
        self.window = self.least
        self._apply = apply
        self._mean: float | None = None
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """One batch took ``seconds`` to process."""
        with self._lock:
            mean = self._mean = (seconds if self._mean is None
                                 else self._mean + SMOOTHING * (seconds - self._mean))
            window = batch_window(mean, self.least, self.most)
            if window != self.window:
                self.window = window
                self._apply(window)
