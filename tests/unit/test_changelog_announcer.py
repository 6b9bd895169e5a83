"""The announcer: how long each written batch waited to be visible (one sample per
written batch, kept across a failed refresh), and the pace of its refreshes, spaced
more while the listener is behind (pure: a stand-in change log that refreshes
nothing)."""
from __future__ import annotations

import threading
import time

import pytest

from searchlight_forward.changelog.announcer import Announcer, pause_between
from searchlight_forward.changelog.reader import Head


def wait_until(condition, timeout: float) -> bool:
    """A bounded poll (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


class StandInLog:
    """Counts refreshes; the first ``failures`` raise; each waits for ``gate``."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.refreshes = 0
        self.gate = threading.Event()
        self.gate.set()

    def head(self) -> Head:
        return Head("g-1", (7,))

    def refresh(self, index: str) -> None:
        self.gate.wait(10)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("search server away")
        self.refreshes += 1


def samples(announcer: Announcer) -> int:
    for metric in announcer.visible_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return int(sample.value)
    return 0


def test_every_written_batch_is_one_sample_even_when_several_share_a_refresh():
    log = StandInLog()
    announcer = Announcer({"g": log}, None, interval=0.01)
    log.gate.clear()                 # the first refresh waits: the next writes pile up
    announcer.start()
    try:
        announcer.written("g")
        assert wait_until(lambda: log.refreshes == 0 and not announcer._dirty, 5)
        for _ in range(4):
            announcer.written("g")
        log.gate.set()
        assert wait_until(lambda: samples(announcer) == 5, 5), samples(announcer)
        assert 2 <= log.refreshes <= 5
    finally:
        announcer.stop()


def test_a_batch_written_before_a_failed_refresh_is_counted_once_it_is_visible():
    log = StandInLog(failures=1)
    announcer = Announcer({"g": log}, None, interval=0.01)
    announcer.start()
    try:
        announcer.written("g")
        assert wait_until(lambda: log.refreshes == 1, 10)
        assert wait_until(lambda: samples(announcer) == 1, 5)
        assert announcer.counters.get("refresh_failures") == 1
    finally:
        announcer.stop()


def test_refreshes_are_spaced_more_while_the_listener_is_behind():
    assert pause_between(0.02, 0.1, behind=False) == 0.1        # cheap: the interval
    assert pause_between(0.2, 0.1, behind=False) == pytest.approx(0.4)
    assert pause_between(0.2, 0.1, behind=True) == pytest.approx(1.2)
    assert pause_between(0.01, 0.1, behind=True) == 0.1


def test_the_pace_follows_whether_the_listener_is_behind_at_each_refresh():
    log = StandInLog()
    state = {"behind": True}
    announcer = Announcer({"g": log}, None, interval=0.01, behind=lambda: state["behind"])
    announcer.start()
    try:
        announcer.written("g")
        assert wait_until(lambda: log.refreshes == 1, 5)
        state["behind"] = False                     # caught up: the usual pace again
        announcer.written("g")
        assert wait_until(lambda: log.refreshes == 2, 5)
        assert announcer.counters.get("behind_pacings") == 1
    finally:
        announcer.stop()
