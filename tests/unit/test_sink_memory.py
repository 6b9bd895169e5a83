"""base.Sent: what a sink remembers having sent (pure, with real threads as the
consumers' runs)."""
import threading

from forwarders.sinks.base import Sent
from searchlight_forward.model.envelope import RESYNC_BEGIN, Envelope, control


def change(rid: str, version: int) -> Envelope:
    return Envelope(resource_type="OS::Nova::Server", id=rid, project_id="p",
                    version=version, operation="index", event_type="e", timestamp="",
                    document={"id": rid})


def in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_one_run_sends_a_version_once_and_never_an_older_one():
    sent = Sent()
    memory = sent.for_caller()
    assert memory.wanted(change("a", 2))
    memory.record(change("a", 2))
    assert not memory.wanted(change("a", 2))          # the log held it twice
    assert not memory.wanted(change("a", 1))          # older
    assert memory.wanted(change("a", 3)) and memory.wanted(change("b", 1))
    assert memory.wanted(control(RESYNC_BEGIN, "x"))


def test_a_new_run_sends_what_it_reads_again_but_never_an_older_version():
    sent = Sent()
    first = sent.for_caller()
    first.record(change("a", 2))
    # Another consumer thread (a replay, a takeover): the same version goes again,
    # an older one never.
    assert in_thread(lambda: sent.for_caller().wanted(change("a", 2)))
    assert not in_thread(lambda: sent.for_caller().wanted(change("a", 1)))
