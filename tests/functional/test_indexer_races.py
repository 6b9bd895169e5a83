"""Two listener processes writing one security group at once, on the real
Elasticsearch, with the interleaving forced: each process is an ``Indexer`` of its
own (its own locks and cache), and one runs entirely between the other's read and
its write.

A rule delete names only the rule. When it overtakes the rule's create, the
process handling the delete finds no group holding the rule and leaves an item
removal; the process adding the rule must still honour it, even if it read the
removals before they were written."""
from __future__ import annotations

import threading

import pytest

from searchlight_forward.indexer import indices
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.model.change import (DocumentChange, Operation, chain,
                                              remove_item, set_fields, upsert_item)
from searchlight_forward.model import documents
from tests.functional.websocket_support import ADMIN_ONLY, ALL_TYPES, PLUGINS

GROUP_TYPE = "OS::Neutron::SecurityGroup"
SG, PROJECT = "6d1c6bd5-5a1b-4b53-9f47-0d6d4a1e0c01", "a3f0c9d2e1b84c7f9a6b5d4c3e2f1a0b"
KEPT, DELETED = "rule-kept-0001", "rule-deleted-0002"
STAMP = "2026-03-02 12:00:00.000000"


def _group(version: int) -> DocumentChange:
    document = {"id": SG, "resource_type": GROUP_TYPE, "project_id": PROJECT,
                "name": "web-sg", "security_group_rules": [
                    {"id": KEPT, "security_group_id": SG, "direction": "ingress"}]}
    return DocumentChange(GROUP_TYPE, SG, PROJECT, Operation.INDEX, version,
                          "security_group.create.end", STAMP, document=document)


def _rule_created(version: int) -> DocumentChange:
    rule = {"id": DELETED, "security_group_id": SG, "direction": "egress"}
    return DocumentChange(GROUP_TYPE, SG, PROJECT, Operation.UPDATE, version,
                          "security_group_rule.create.end", STAMP,
                          patch=chain(upsert_item("security_group_rules", "id", rule),
                                      set_fields({"updated_at": "2026-03-02T12:00:02"})))


def _rule_deleted(version: int) -> DocumentChange:
    # As Neutron sends it before Zed: the rule's id only, not its group.
    return DocumentChange(GROUP_TYPE, "", None, Operation.UPDATE, version,
                          "security_group_rule.delete.end", STAMP,
                          patch=chain(remove_item("security_group_rules", "id", DELETED),
                                      set_fields({"updated_at": "2026-03-02T12:00:03"})),
                          locate_by=("security_group_rules.id", DELETED))


class _PauseAfterFirstRead:
    """The real client, except that ``then()`` runs right after the first mget."""

    def __init__(self, es, then):
        self._es, self._then, self._done = es, then, threading.Event()

    def mget(self, *args, **kwargs):
        resp = self._es.mget(*args, **kwargs)
        if not self._done.is_set():
            self._done.set()
            self._then()
        return resp

    def __getattr__(self, name):
        return getattr(self._es, name)


def _rules(es, group: str, role: str) -> list[str]:
    es.indices.refresh(index=f"{group}-listener")
    doc = es.get(index=f"{group}-listener", id=documents.doc_id(SG, role))["_source"]
    return sorted(r["id"] for r in doc.get("security_group_rules") or [])


@pytest.fixture
def group(es, names):
    """The resource group's index, holding the security group (one rule) already."""
    group = names["group"]
    indices.ensure(es, group, PLUGINS.plugins)
    _indexer(es, group).apply([(0, _group(100))])
    yield group
    es.indices.delete(index=f"{group}-*", ignore_unavailable=True, allow_no_indices=True)


def _indexer(es, group: str) -> Indexer:
    return Indexer(es, {t: group for t in ALL_TYPES}, ADMIN_ONLY,
                   item_lists={GROUP_TYPE: {"security_group_rules": "id"}})


def test_a_rule_delete_handled_between_the_create_s_read_and_write_is_not_lost(es, group):
    deleting = _indexer(es, group)
    outcome = {}

    def delete_now():
        # The group does not hold the rule yet: the delete can only leave a removal.
        outcome["delete"] = deleting.apply([(1, _rule_deleted(300))])

    creating = _indexer(_PauseAfterFirstRead(es, delete_now), group)
    creating.apply([(2, _rule_created(200))])

    assert deleting.counters["unlocated"] == 1          # the interleaving happened
    assert outcome["delete"].rejected == []
    assert _rules(es, group, documents.ADMIN) == [KEPT]
    assert _rules(es, group, documents.USER) == [KEPT]


def test_a_rule_created_while_the_delete_writes_its_removal_is_removed(es, group):
    """The other order: the create's process runs between the delete's removal and
    its second look; it reads the removal and folds it in."""
    creating = _indexer(es, group)
    state = {"created": False}

    class _CreateBeforeTheSecondLook:
        """``indices.refresh`` is the delete's first call once its removal is
        written: the create's process writes the rule just before it."""

        def refresh(self, **kwargs):
            if not state["created"]:
                state["created"] = True
                creating.apply([(2, _rule_created(200))])
            return es.indices.refresh(**kwargs)

        def __getattr__(self, name):
            return getattr(es.indices, name)

    class _Client:
        indices = _CreateBeforeTheSecondLook()

        def __getattr__(self, name):
            return getattr(es, name)

    deleting = _indexer(_Client(), group)
    deleting.apply([(1, _rule_deleted(300))])

    assert state["created"]
    assert _rules(es, group, documents.ADMIN) == [KEPT]
    assert _rules(es, group, documents.USER) == [KEPT]


def test_a_rule_delete_in_another_batch_of_the_same_process_does_not_wait_for_the_create(
        es, group):
    """Two executor threads of one listener process, one ``Indexer`` (shared locks
    and cache): the delete's batch runs while the create's batch is between its read
    and its write, and they settle it as two processes do. (A lock that made
    lookups wait for every batch in flight serialised the executor threads: at
    500/s they spent three quarters of their time waiting for it.)"""
    outcome = {}

    def delete_now():
        deleting = threading.Thread(target=lambda: outcome.update(
            delete=shared.apply([(1, _rule_deleted(300))])), daemon=True)
        deleting.start()
        deleting.join(20)
        outcome["done_meanwhile"] = not deleting.is_alive()

    shared = _indexer(_PauseAfterFirstRead(es, delete_now), group)
    shared.apply([(2, _rule_created(200))])

    assert outcome["done_meanwhile"], "the delete's batch waited for the create's"
    assert shared.counters["unlocated"] == 1             # the interleaving happened
    assert outcome["delete"].rejected == []
    assert _rules(es, group, documents.ADMIN) == [KEPT]
    assert _rules(es, group, documents.USER) == [KEPT]
