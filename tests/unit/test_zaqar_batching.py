"""The Zaqar sink's pure logic: post sizes, batch planning, templates, names."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchlight_forward.model.envelope import Envelope
from forwarders.sinks.base import SinkConfigError
from forwarders.sinks.zaqar.batching import (BODY_OVERHEAD, done_prefix, plan_batches,
                                             post_body, post_size)
from forwarders.sinks.zaqar.config import (MAX_POST_BYTES, project_problem,
                                           queue_name_problem, render, slug, template_fields)

ENVELOPE = Envelope(resource_type="OS::Neutron::FloatingIP", id="fip-1",
                    project_id="abc123", version=42, operation="delete",
                    event_type="floatingip.delete.end", timestamp="2026-03-02 12:00:07",
                    document=None)


# -- post sizes ----------------------------------------------------------------------

@given(st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=30)), max_size=8))
def test_post_size_is_the_size_of_the_body_sent_and_the_body_is_the_messages(bodies):
    messages = [json.dumps({"ttl": 3600, "body": b}).encode() for b in bodies]
    body = post_body(messages)
    assert post_size(len(m) for m in messages) == len(body)
    assert json.loads(body) == {"messages": [{"ttl": 3600, "body": b} for b in bodies]}


def test_post_size_of_nothing_is_the_envelope_of_the_body():
    assert post_size([]) == BODY_OVERHEAD == len('{"messages":[]}')
    assert post_size([10, 20]) == BODY_OVERHEAD + 10 + 20 + 1


# -- batch planning ------------------------------------------------------------------

def test_split_by_count():
    batches, too_big = plan_batches([10] * 250, MAX_POST_BYTES, 100)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert too_big == []


def test_split_by_bytes():
    size = 5_100                                 # ~5 KB messages
    batches, _ = plan_batches([size] * 150, MAX_POST_BYTES, 100)
    fits = (MAX_POST_BYTES - BODY_OVERHEAD + 1) // (size + 1)
    assert [len(b) for b in batches] == [fits, fits, 150 - 2 * fits]
    assert all(post_size([size] * len(b)) <= MAX_POST_BYTES for b in batches)


def test_a_post_may_be_exactly_the_limit():
    exact = MAX_POST_BYTES - BODY_OVERHEAD
    assert plan_batches([exact], MAX_POST_BYTES, 100) == ([[0]], [])
    assert plan_batches([exact + 1], MAX_POST_BYTES, 100) == ([], [0])
    # two that together are exactly the limit share a post
    half = (MAX_POST_BYTES - BODY_OVERHEAD - 1) // 2
    assert plan_batches([half, half], MAX_POST_BYTES, 100) == ([[0, 1]], [])
    assert plan_batches([half, half + 1], MAX_POST_BYTES, 100) == ([[0], [1]], [])


def test_too_big_ones_are_set_aside_and_the_others_keep_their_order():
    sizes = [100, 300_000, 100, 100, MAX_POST_BYTES, 100]
    batches, too_big = plan_batches(sizes, MAX_POST_BYTES, 2)
    assert too_big == [1, 4]
    assert batches == [[0, 2], [3, 5]]


def test_nothing_to_plan():
    assert plan_batches([], MAX_POST_BYTES, 100) == ([], [])


@pytest.mark.parametrize("max_bytes, max_count", [(0, 1), (100, 0)])
def test_limits_must_be_positive(max_bytes, max_count):
    with pytest.raises(ValueError):
        plan_batches([1], max_bytes, max_count)


@settings(max_examples=300)
@given(sizes=st.lists(st.integers(min_value=1, max_value=3_000), max_size=200),
       max_bytes=st.integers(min_value=BODY_OVERHEAD + 1, max_value=8_000),
       max_count=st.integers(min_value=1, max_value=50))
def test_batches_respect_limits_keep_order_and_are_greedy(sizes, max_bytes, max_count):
    batches, too_big = plan_batches(sizes, max_bytes, max_count)
    # every message is either in exactly one batch or too big, in the original order
    flat = [i for b in batches for i in b]
    assert flat == sorted(flat)
    assert sorted(flat + too_big) == list(range(len(sizes)))
    assert too_big == [i for i, s in enumerate(sizes) if BODY_OVERHEAD + s > max_bytes]
    for batch in batches:
        assert batch
        assert len(batch) <= max_count
        assert post_size(sizes[i] for i in batch) <= max_bytes
    # greedy: the next message did not fit in the previous batch
    for before, after in zip(batches, batches[1:]):
        assert len(before) == max_count or \
            post_size([sizes[i] for i in before] + [sizes[after[0]]]) > max_bytes


# -- templates and names ---------------------------------------------------------------

def test_slug():
    assert slug("OS::Nova::Server") == "os-nova-server"
    assert slug("OS::Neutron::FloatingIP") == "os-neutron-floatingip"
    assert slug("  weird__Type!! ") == "weird-type"


def test_template_fields():
    assert template_fields("tenant-{project_id}", "queue") == {"project_id"}
    assert template_fields("ops", "queue") == set()
    assert template_fields("{{literal}}-{resource_type_slug}", "queue") == \
        {"resource_type_slug"}
    assert template_fields("v{version:x}", "queue") == {"version"}


@pytest.mark.parametrize("template, complaint", [
    ("tenant-{tenant_id}", "unknown field {tenant_id}"),
    ("q-{}", "positional"),
    ("q-{0}", "positional"),
    ("q-{document}", "unknown field {document}"),
    ("q-{id.real}", "unknown field {id.real}"),
    ("q-{id[0]}", "unknown field {id[0]}"),
    ("q-{id", "not a str.format template"),
])
def test_template_fields_refuse(template, complaint):
    with pytest.raises(SinkConfigError) as caught:
        template_fields(template, "queue")
    assert str(caught.value).startswith("queue: ")
    assert complaint in str(caught.value)


def test_render():
    assert render("tenant-{project_id}", ENVELOPE) == "tenant-abc123"
    assert render("{resource_type_slug}-{operation}", ENVELOPE) == \
        "os-neutron-floatingip-delete"
    assert render("tenant-{project_id}", ENVELOPE, project_id="ops") == "tenant-ops"


@pytest.mark.parametrize("name, ok", [
    ("tenant-abc_123", True), ("a" * 64, True), ("a" * 65, False), ("", False),
    ("os::nova", False), ("with.dot", False), ("with space", False), ("é", False)])
def test_queue_names(name, ok):
    assert (queue_name_problem(name) is None) is ok


@pytest.mark.parametrize("project, ok", [
    ("0123456789abcdef0123456789abcdef", True), ("ops", True), ("", False),
    ("a" * 257, False), ("a b", False), ("new\nline", False)])
def test_projects(project, ok):
    assert (project_problem(project) is None) is ok


def test_done_prefix():
    assert done_prefix([]) == 0
    assert done_prefix([True, True, False, True]) == 2
    assert done_prefix([False, True]) == 0
    assert done_prefix([True] * 3) == 3
