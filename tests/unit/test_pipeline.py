"""A pipeline's selection, filters and failure policy, on plain data."""
import pytest

from forwarders.filters.base import Filter, FilterContext
from forwarders.filters.fields import RegexFields
from forwarders.pipeline.pipeline import FailurePolicy, FilterFailed, Pipeline
from forwarders.sinks.logger.sink import LoggerSink
from searchlight_forward.model.envelope import RESYNC_BEGIN, Envelope, control
from searchlight_forward.retry import Policy

SERVER = Envelope("OS::Nova::Server", "s1", "p1", 5, "index", "instance.update", "",
                  {"name": "vm", "adminPass": "x"}, priority="info")


class Explodes(Filter):
    def apply(self, resource_type, document):
        raise RecursionError("too deep")


def pipeline(filters=(), **kw):
    return Pipeline("p", list(filters), "log", LoggerSink("log", {}, None), **kw)


def test_filters_run_in_order_and_a_failing_one_withholds():
    secrets = RegexFields("secrets", {"patterns": "(?i)pass"}, FilterContext())
    assert pipeline([secrets]).prepare(SERVER).document == {"name": "vm"}
    with pytest.raises(FilterFailed, match="filter boom failed on OS::Nova::Server s1"):
        pipeline([Explodes("boom", {}, FilterContext())]).prepare(SERVER)


def test_selection_by_type_event_and_priority():
    p = pipeline(resource_types=frozenset({"OS::Nova::Server"}), event_types=("instance.*",),
                 priorities=frozenset({"info"}))
    assert p.wants(SERVER)
    assert not p.wants(Envelope("OS::Glance::Image", "i", "p", 1, "index", "image.update",
                                "", {}))
    assert not p.wants(Envelope("OS::Nova::Server", "s", "p", 1, "index",
                                "compute.instance.create.error", "", {}, priority="error"))


def test_control_envelopes_pass_every_selection_and_filter():
    p = pipeline([Explodes("boom", {}, FilterContext())],
                 resource_types=frozenset({"OS::Nova::Server"}))
    begin = control(RESYNC_BEGIN, "rebuild")
    assert p.prepare(begin) is begin


def test_attempts_per_policy():
    policy = Policy(attempts=4)
    assert FailurePolicy("drop", policy).attempts == 1
    assert FailurePolicy("retry", policy).attempts == 4
    assert FailurePolicy("hold", policy).attempts is None
    assert FailurePolicy("hold", policy).retry_policy().attempts is None
