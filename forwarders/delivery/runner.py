"""Many consumers on a few threads: a bounded pool that runs each consumer's steps.

A delivery process may own ten thousand subscriptions; a thread each costs memory,
wake-ups and scheduling for consumers that have nothing to do. Here a consumer holds
no thread while idle. It is a *task* with a ``step()`` that does a bounded amount of
work and says when it wants to run again:

* ``None``: when woken (a page was queued for it, it was asked to stop);
* a monotonic time: then, or earlier if woken (a backoff, a digest, a probe);
* ``DONE``: finished; it never runs again.

``threads`` worker threads take runnable tasks first come, first served; a task
that is woken while it runs is run again right after, never by two threads at
once. One thread waits on the earliest timer. A task that keeps having work
returns a time in the past and goes to the back of the line, so a busy consumer
cannot starve the others: a slow destination holds one thread for at most one
call (its sink's timeout).
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from typing import Protocol

LOG = logging.getLogger(__name__)

DONE = "done"


class Task(Protocol):
    def step(self) -> float | str | None: ...


class Job:
    """A task's place in the runner: wake it, see whether it is finished."""

    __slots__ = ("task", "runner", "queued", "running", "again", "due", "finished")

    def __init__(self, task: Task, runner: "Runner"):
        self.task = task
        self.runner = runner
        self.queued = False          # in the ready line
        self.running = False
        self.again = False           # woken while running: run once more
        self.due: float | None = None   # its timer, if any
        self.finished = threading.Event()

    def wake(self) -> None:
        self.runner.wake(self)

    def alive(self) -> bool:
        return not self.finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


class Runner:
    def __init__(self, threads: int = 16, name: str = "delivery"):
        self.size = threads
        self.name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._ready: collections.deque[Job] = collections.deque()
        self._timers: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.steps = 0               # steps run, for /status
        self.busy = 0                # threads in a step now
        self._finished: list[Job] = []   # since the last take_finished()

    def start(self) -> "Runner":
        for i in range(self.size):
            thread = threading.Thread(target=self._worker, daemon=True,
                                      name=f"{self.name}-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._work.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, task: Task) -> Job:
        job = Job(task, self)
        self.wake(job)
        return job

    def wake(self, job: Job) -> None:
        with self._lock:
            self._wake(job)

    def _wake(self, job: Job) -> None:
        if job.finished.is_set():
            return
        if job.running:
            job.again = True
        elif not job.queued:
            job.queued = True
            job.due = None           # a stale timer entry is skipped when it fires
            self._ready.append(job)
            self._work.notify()

    def take_finished(self) -> list[Job]:
        """The jobs that finished since the last call (their owner looks only at
        those, not at every job)."""
        with self._lock:
            done, self._finished = self._finished, []
        return done

    def stats(self) -> dict:
        with self._lock:
            return {"threads": self.size, "busy": self.busy, "ready": len(self._ready),
                    "timers": len(self._timers), "steps": self.steps}

    # -- the worker threads ---------------------------------------------------------

    def _next(self) -> Job | None:
        """The next runnable job (the lock is held); None when stopping."""
        while not self._stopping:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                due, _, job = heapq.heappop(self._timers)
                if job.due == due:                    # not superseded meanwhile
                    self._wake(job)
            if self._ready:
                job = self._ready.popleft()
                job.queued = False
                job.running = True
                self.busy += 1
                return job
            self._work.wait(self._timers[0][0] - now if self._timers else None)
        return None

    def _worker(self) -> None:
        while True:
            with self._lock:
                job = self._next()
            if job is None:
                return
            try:
                result = job.task.step()
            except BaseException:  # noqa: BLE001 - a task says why itself; never the pool
                LOG.exception("%s: a step raised; the task is finished", self.name)
                result = DONE
            with self._lock:
                self.busy -= 1
                self.steps += 1
                job.running = False
                if result == DONE:
                    job.finished.set()
                    self._finished.append(job)
                    continue
                if job.again:
                    job.again = False
                    self._wake(job)
                elif result is not None:
                    if result <= time.monotonic():
                        self._wake(job)               # more to do: back of the line
                    else:
                        job.due = result
                        heapq.heappush(self._timers, (result, next(self._order), job))
                        if self._timers[0][2] is job:
                            self._work.notify()       # a sooner timer than the waiter's
