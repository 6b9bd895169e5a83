"""One pipeline at work: its own thread, queue and failure policy.

Each pipeline runs on its own, so a slow or dead sink only fills its own queue (or
outbox) and never stalls indexing or another pipeline.

* ``drop``: one attempt; on failure the envelopes are dropped and counted.
* ``retry``: up to ``attempts`` tries with exponential backoff and jitter, then dropped
  and counted. Envelopes wait in a bounded in-memory queue; when it is full the
  newest are dropped and counted (they would be lost on a crash anyway).
* ``hold``: envelopes go to a durable outbox (RabbitMQ) and stay there, in order,
  until the sink takes them; retries never give up. A must-deliver pipeline writes
  to the outbox before the notifications are acknowledged.
"""
from __future__ import annotations

import collections
import logging
from typing import Callable
import queue
import threading
import time

from forwarders.envelope import Envelope
from forwarders.loader import Pipeline
from forwarders.outbox import Outbox
from forwarders.sinks import SinkRejected, SinkUnavailable
from searchlight_forward.backoff import Backoff, Stopping

LOG = logging.getLogger(__name__)

BATCH = 100            # envelopes per deliver() call
QUEUE_SIZE = 10_000    # in-memory envelopes per drop/retry pipeline


class PipelineRunner:
    def __init__(self, pipeline: Pipeline, transport_url: str,
                 stop_event: threading.Event | None = None,
                 dead_letter: Callable[[str, list], None] | None = None,
                 outbox_name: str | None = None):
        self.pipeline = pipeline
        # (pipeline name, [sinks.Rejection]) -> stored durably, or raises
        self.dead_letter = dead_letter or (lambda name, rejections: None)
        self.policy = pipeline.policy
        self.stop_event = stop_event or threading.Event()
        self.counters: collections.Counter = collections.Counter()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.backoff = Backoff(self.policy.backoff, self.policy.max_backoff, self.stop_event)
        self.outbox = (Outbox(transport_url, outbox_name or pipeline.name)
                       if self.policy.on_failure == "hold" else None)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"pipeline-{pipeline.name}")

    # -- listener side ---------------------------------------------------------

    def start(self) -> None:
        self.pipeline.sink.start()
        self.thread.start()

    def submit(self, envelopes: list[Envelope]) -> None:
        """Hand over envelopes; returns at once unless the pipeline is must-deliver."""
        if not envelopes:
            return
        self.counters["submitted"] += len(envelopes)
        if self.pipeline.must_deliver:
            # Durable before the notifications are acknowledged.
            self.backoff.until_done(lambda: self.outbox.put(envelopes),
                                    f"outbox write for pipeline {self.pipeline.name}",
                                    "Is RabbitMQ up? The batch stays unacknowledged.")
            return
        for envelope in envelopes:
            try:
                self.queue.put_nowait(envelope)
            except queue.Full:
                self.counters["dropped"] += 1
                self.counters["dropped_queue_full"] += 1

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join(timeout)
        self.pipeline.sink.close()
        if self.outbox:
            self.outbox.close()

    def stats(self) -> dict:
        stats = dict(self.counters)
        stats.update(policy=self.policy.on_failure, must_deliver=self.pipeline.must_deliver,
                     sink=self.pipeline.sink_name, queued=self.queue.qsize(),
                     last_error=self.last_error, last_error_at=self.last_error_at)
        if self.outbox:
            try:
                stats["held_batches"] = self.outbox.depth()
            except Exception as exc:  # noqa: BLE001 - stats must not fail
                stats["held_batches"] = f"unknown ({exc})"
        return stats

    # -- the pipeline's own thread ---------------------------------------------

    def _run(self) -> None:
        try:
            if self.outbox:
                self._run_hold()
            else:
                self._run_in_memory()
        except Stopping:
            pass
        except Exception:  # noqa: BLE001 - keep the reason visible in stats and logs
            LOG.exception("pipeline %s stopped on an unexpected error", self.pipeline.name)
            self._failed("pipeline thread crashed; see the log")

    def _next_batch(self, timeout: float) -> list[Envelope]:
        try:
            batch = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run_in_memory(self) -> None:
        while not self.stop_event.is_set():
            batch = self._next_batch(0.2)
            if not batch:
                continue
            if self.policy.on_failure == "hold":
                raise AssertionError("hold pipelines use the outbox")
            attempts = 1 if self.policy.on_failure == "drop" else self.policy.attempts
            remaining = batch
            for attempt in range(1, attempts + 1):
                try:
                    self._deliver(remaining)
                    remaining = []
                    break
                except SinkUnavailable as exc:
                    self.counters["delivered"] += exc.delivered
                    remaining = remaining[exc.delivered:]
                    self._failed(str(exc))
                    if attempt < attempts:
                        self.counters["retried"] += len(remaining)
                        self.backoff.sleep(self.backoff.delay(attempt))
            if remaining:
                self.counters["dropped"] += len(remaining)

    def _run_hold(self) -> None:
        # Non-must-deliver pipelines reach the outbox through the memory queue.
        mover = threading.Thread(target=self._move_to_outbox, daemon=True,
                                 name=f"pipeline-{self.pipeline.name}-outbox")
        mover.start()
        reader = None
        attempt = 0
        pending: list = []
        while not self.stop_event.is_set():
            try:
                if reader is None:
                    reader = self.outbox.reader(prefetch=BATCH * 2)
                if not pending:
                    pending = reader.take(BATCH, timeout=0.5)
                    if not pending:
                        continue
                envelopes = [e for e, _ in pending]
                try:
                    self._deliver(envelopes)
                    done = len(pending)
                except SinkUnavailable as exc:
                    done = exc.delivered
                    self.counters["delivered"] += done
                    self._failed(str(exc))
                for _, message in pending[:done]:
                    message.ack()
                pending = pending[done:]
                if pending:
                    attempt += 1
                    self.counters["retried"] += len(pending)
                    self.backoff.sleep(self.backoff.delay(attempt))
                else:
                    attempt = 0
            except Stopping:
                break
            except (OSError, ConnectionError) as exc:
                # The broker went away: unacknowledged envelopes go back to the queue.
                self._failed(f"outbox: {exc}")
                pending = []
                if reader is not None:
                    try:
                        reader.close()
                    except Exception:  # noqa: BLE001
                        pass
                    reader = None
                attempt += 1
                self.backoff.sleep(self.backoff.delay(attempt))
        if reader is not None:
            reader.close()

    def _move_to_outbox(self) -> None:
        try:
            while not self.stop_event.is_set():
                batch = self._next_batch(0.2)
                if batch:
                    self.backoff.until_done(lambda: self.outbox.put(batch),
                                            f"outbox write for pipeline {self.pipeline.name}",
                                            "Is RabbitMQ up?")
        except Stopping:
            pass

    def _deliver(self, envelopes: list[Envelope]) -> None:
        """deliver(); envelopes the sink can never take are dead-lettered, not retried."""
        try:
            self.pipeline.sink.deliver(envelopes)
            self.counters["delivered"] += len(envelopes)
        except SinkRejected as exc:
            rejected = exc.rejected
            self.backoff.until_done(
                lambda: self.dead_letter(self.pipeline.name, rejected),
                f"dead-letter write for pipeline {self.pipeline.name}",
                "Is Elasticsearch up?")
            self.counters["rejected"] += len(exc.rejected)
            self.counters["delivered"] += len(envelopes) - len(exc.rejected)
            self._failed(str(exc))

    def _failed(self, reason: str) -> None:
        self.counters["failures"] += 1
        self.last_error, self.last_error_at = reason, time.time()
        LOG.warning("pipeline %s: sink %s failed: %s", self.pipeline.name,
                    self.pipeline.sink_name, reason)
