"""The one retry policy: attempts, classification, stop-aware and probe-aware waits."""
import logging
import threading

import elasticsearch
import kombu.exceptions
import opensearchpy
import pytest

from searchlight_forward.retry import Policy, Retry, Stopping, TransientError, is_transient

FAST = Policy(initial=0.001, maximum=0.002)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``value``."""

    def __init__(self, failures, error=TransientError("busy"), value="done"):
        self.failures, self.error, self.value, self.calls = failures, error, value, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


def test_transient_failures_are_retried_until_done():
    fn = Flaky(3)
    retry = Retry(FAST, "test")
    assert retry.call(fn) == "done"
    assert fn.calls == 4 and retry.retries == 3


def test_attempts_bound_the_tries_and_the_last_error_is_raised():
    fn = Flaky(10)
    with pytest.raises(TransientError):
        Retry(Policy(initial=0.001, maximum=0.002, attempts=3), "test").call(fn)
    assert fn.calls == 3


def test_other_errors_are_raised_at_once():
    fn = Flaky(1, error=ValueError("a bug"))
    with pytest.raises(ValueError):
        Retry(FAST, "test").call(fn)
    assert fn.calls == 1


def test_a_caller_classifies_its_own_failures():
    class Down(Exception):
        pass
    fn = Flaky(2, error=Down())
    assert Retry(FAST, "sink", classify=lambda e: isinstance(e, Down)).call(fn) == "done"


def test_a_classified_failure_is_one_line_without_a_traceback(caplog):
    # A tenant's endpoint answering 503 is expected: the line names it, no traceback.
    class Unavailable(Exception):
        pass
    fn = Flaky(3, error=Unavailable("http://example.com/hook answered 503"))
    with caplog.at_level(logging.WARNING, logger="tenant-sink"):
        Retry(FAST, "pipeline subscription-1: sink subscriptions",
              classify=lambda e: isinstance(e, Unavailable),
              logger=logging.getLogger("tenant-sink")).call(fn)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(m.startswith("pipeline subscription-1: sink subscriptions failed: "
                            "Unavailable: http://example.com/hook answered 503. retry ")
               for m in messages), messages
    assert not any("Traceback" in m or "\n" in m for m in messages)
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.timeout(30)     # the 60 s backoff would outlast it
def test_stopping_interrupts_a_long_wait_at_once():
    stop = threading.Event()
    retry = Retry(Policy(initial=60, maximum=60), "test", stop_event=stop)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopping):
        retry.call(Flaky(1))


@pytest.mark.timeout(30)     # the 60 s backoff would outlast it
def test_a_probe_ends_the_wait_when_the_peer_is_back():
    back = threading.Event()
    threading.Timer(0.3, back.set).start()
    retry = Retry(Policy(initial=60, maximum=60, probe_interval=0.05), "test",
                  probe=back.is_set)
    assert retry.call(Flaky(1)) == "done"


def test_an_already_stopped_retry_does_not_call():
    stop = threading.Event()
    stop.set()
    fn = Flaky(0)
    with pytest.raises(Stopping):
        Retry(FAST, "test", stop_event=stop).call(fn)
    assert fn.calls == 0


@pytest.mark.parametrize("exc, transient", [
    (TransientError("x"), True),
    (elasticsearch.ConnectionError("down"), True),
    (opensearchpy.ConnectionError("N/A", "down", None), True),
    (opensearchpy.TransportError(503, "unavailable_shards_exception", {}), True),
    (opensearchpy.TransportError(429, "es_rejected_execution_exception", {}), True),
    (opensearchpy.RequestError(400, "mapper_parsing_exception", {}), False),
    (opensearchpy.ConflictError(409, "version_conflict_engine_exception", {}), False),
    (kombu.exceptions.OperationalError("broker restarted"), True),
    (ConnectionResetError(), True),
    (ValueError("bad"), False),
    (KeyError("bug"), False),
])
def test_one_classification_of_transient_errors(exc, transient):
    assert is_transient(exc) is transient
