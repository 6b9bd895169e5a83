"""The delivery pool (forwarders.delivery.runner), the non-blocking retry policy
(searchlight_forward.retry.Backoff) and the live feed's index of consumers
(forwarders.delivery.consumer.LiveConsumers): pure logic, threads at most."""
from __future__ import annotations

import collections
import threading
import time

import pytest

from forwarders.delivery.consumer import LiveConsumers
from forwarders.delivery.runner import DONE, Runner
from searchlight_forward.changelog import follower as core
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import Page
from searchlight_forward.model.documents import ROLE_FIELD
from searchlight_forward.retry import Backoff, Policy


@pytest.fixture
def runner():
    r = Runner(threads=4, name="test").start()
    yield r
    r.stop()


class Counting:
    """A task that counts its steps and how many run at once."""

    def __init__(self, results=None, work=0.0):
        self.results = list(results or [])
        self.work = work
        self.steps = 0
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        self.stepped = threading.Event()
        self.times: list[float] = []

    def step(self):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.work)
        with self.lock:
            self.running -= 1
            self.steps += 1
            self.times.append(time.monotonic())
        self.stepped.set()
        return self.results.pop(0) if self.results else None


def wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_wakes_while_a_step_runs_make_one_more_step_never_two_at_once(runner):
    gate = threading.Event()

    class Blocking(Counting):
        def step(self):
            if self.steps == 0:
                gate.wait(5)         # the first step runs until the wakes are in
            return super().step()
    task = Blocking()
    job = runner.submit(task)
    assert wait(lambda: runner.stats()["busy"] == 1)
    threads = [threading.Thread(target=job.wake) for _ in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    gate.set()
    assert wait(lambda: task.steps == 2)
    assert wait(lambda: runner.stats()["busy"] == 0 and runner.stats()["ready"] == 0)
    assert task.steps == 2 and task.most_at_once == 1
    job.wake()                       # idle: one wake, one step
    assert wait(lambda: task.steps == 3)


def test_a_task_asking_for_a_time_runs_then_and_done_finishes_it(runner):
    start = time.monotonic()
    task = Counting(results=[start + 0.3, DONE])
    job = runner.submit(task)
    assert job.wait(5)
    assert task.steps == 2 and task.times[1] >= start + 0.3
    job.wake()                       # a finished task never runs again
    assert not wait(lambda: task.steps > 2, 0.3)


def test_an_earlier_wake_supersedes_the_timer(runner):
    task = Counting(results=[time.monotonic() + 60, DONE])
    job = runner.submit(task)
    assert wait(lambda: task.steps == 1)
    job.wake()
    assert job.wait(5) and task.steps == 2


def test_a_busy_task_does_not_starve_the_others():
    runner = Runner(threads=1, name="one").start()
    try:
        busy = Counting(results=[0.0] * 10_000)          # always more to do
        quiet = Counting(results=[DONE])
        runner.submit(busy)
        assert wait(lambda: busy.steps > 5)
        job = runner.submit(quiet)
        assert job.wait(5)
        assert busy.steps < 10_000           # it was still going when quiet ran
    finally:
        runner.stop()


def test_a_thousand_tasks_on_four_threads_all_finish(runner):
    tasks = [Counting(results=[time.monotonic() + 0.01 * (i % 10), DONE])
             for i in range(1000)]
    jobs = [runner.submit(t) for t in tasks]
    assert all(j.wait(10) for j in jobs)
    assert all(t.steps == 2 for t in tasks)
    assert len({t.name for t in threading.enumerate() if t.name.startswith("test-")}) == 4


def test_a_step_that_raises_finishes_its_task_not_the_pool(runner):
    class Broken:
        def step(self):
            raise RuntimeError("bug")
    job = runner.submit(Broken())
    assert job.wait(5)
    ok = Counting(results=[DONE])
    assert runner.submit(ok).wait(5)


# -- Backoff ----------------------------------------------------------------------

def test_backoff_waits_as_the_policy_says_then_gives_up():
    backoff = Backoff(Policy(schedule=(5.0, 300.0), attempts=4), "webhook")
    assert [backoff.failed(TimeoutError()) for _ in range(4)] == [5.0, 300.0, 300.0, None]
    # the count starts again after a give-up and after a success
    assert backoff.failed(TimeoutError()) == 5.0
    backoff.succeeded()
    assert backoff.failed(TimeoutError()) == 5.0


def test_backoff_raises_what_it_does_not_classify():
    backoff = Backoff(Policy(), "x", classify=lambda e: isinstance(e, TimeoutError))
    with pytest.raises(KeyError):
        backoff.failed(KeyError("bug"))


def test_backoff_doubles_up_to_the_maximum():
    policy = Policy(initial=1.0, maximum=8.0)
    waits = [policy.wait(n) for n in range(1, 8)]
    assert all(0.5 <= w <= 8.0 for w in waits) and waits[-1] == 8.0


# -- the live feed's index of consumers ------------------------------------------------

class StubConsumer:
    """What LiveConsumers uses of a consumer: role, project, a live follower, a
    queue it offers pages to."""

    def __init__(self, role, project_id, position):
        self.role = role
        self.project_id = project_id
        self.follower = core.Follower(position, fresh=core.NOW)
        self.follower.mode = core.Mode.JOINING
        self.queue = collections.deque()
        self._dropped = False

    def offer(self, page):
        if not self.follower.accepts(page.end):
            self._dropped = True
            return False
        self.queue.append(page)
        return True


def entry(seq_no, project, role="user"):
    return Entry("i", 0, seq_no, {ROLE_FIELD: role, "project_id": project, "id": str(seq_no),
                                  "resource_type": "OS::Nova::Server"}, version=1)


def test_a_page_goes_only_to_the_consumers_it_has_entries_for_and_the_others_settle():
    hub = LiveConsumers("g", 1.0)
    start = Position("i", (0,))
    hub.located(start)
    a, b, every, admin_a = (StubConsumer("user", "A", start), StubConsumer("user", "B", start),
                            StubConsumer("user", None, start),
                            StubConsumer("admin", "A", start))
    for c in (a, b, every, admin_a):
        assert hub.join(c)
        c.follower.joined()
    page = Page([entry(1, "A"), entry(2, "A", role="admin"), entry(3, ["not", "a", "str"])],
                Position("i", (3,)))
    hub.dispatch(page)
    assert len(a.queue) == 1 and len(every.queue) == 1 and len(admin_a.queue) == 1
    assert not b.queue
    # b had nothing in it: once it looks, it is where the feed is
    assert b.follower.position == start
    assert hub.settle(b) is False and b.follower.position == Position("i", (3,))
    # a consumer with a page queued is not moved past it
    assert hub.settle(a) is False and a.follower.position == start


def test_a_settling_consumer_on_another_index_is_dropped_to_catch_up():
    hub = LiveConsumers("g", 1.0)
    old = Position("i", (0,))
    hub.located(old)
    c = StubConsumer("user", "A", old)
    assert hub.join(c)
    c.follower.joined()
    hub.dispatch(Page([entry(1, "B")], Position("j", (5,))))    # a rebuild: index j
    assert hub.settle(c) is True and c._dropped and hub.live_count() == 0
