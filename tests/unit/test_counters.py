"""Counters several threads count into: no count lost, readers never broken."""
from __future__ import annotations

import collections
import sys
import threading

import pytest

from searchlight_forward.counters import Counters

pytestmark = pytest.mark.unit

THREADS, ADDS = 8, 20_000


@pytest.fixture
def switch_often():
    # Switch threads every microsecond, so a read-then-write race shows up at once.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _hammer(count) -> None:
    """Eight threads count the same fresh keys in the same order: each key's first
    ``+= 1`` calls ``Counter.__missing__`` (Python code, where a thread can be
    switched out between the read and the write)."""
    start = threading.Barrier(THREADS)

    def run():
        start.wait()
        for key in range(ADDS):
            count(key)
    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def test_no_count_is_lost_when_threads_add_at_once(switch_often):
    # (A plain Counter's ``+=`` lost 7 to 12 of these 160,000 in three runs.)
    counters = Counters()
    _hammer(counters.add)
    assert sum(counters.values()) == THREADS * ADDS == 160_000
    assert set(counters.values()) == {THREADS}


def test_readers_see_a_copy_while_keys_are_added(switch_often):
    counters = Counters()
    done = threading.Event()
    errors: list[Exception] = []

    def read():
        while not done.is_set():
            try:
                for _key, _value in counters.items():    # as the metrics do
                    pass
            except RuntimeError as exc:          # "dictionary changed size"
                errors.append(exc)
                return
    reader = threading.Thread(target=read)
    reader.start()
    for i in range(50_000):
        counters.add(f"key-{i}")
    done.set()
    reader.join(60)
    assert errors == []
    assert len(counters) == 50_000 and sum(counters.values()) == 50_000


def test_it_is_still_a_counter():
    counters = Counters()
    counters.add("a", 3)
    counters.add("b")
    assert counters["missing"] == 0
    assert dict(counters) == {"a": 3, "b": 1}
    assert counters + collections.Counter(a=1) == collections.Counter(a=4, b=1)
    assert sum([counters], collections.Counter()) == collections.Counter(a=3, b=1)
    assert sorted(counters.items()) == [("a", 3), ("b", 1)]
