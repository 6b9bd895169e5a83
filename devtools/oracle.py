"""The end-to-end oracle: what the simulator wrote down about each resource's final
state (``CloudSimulator.expected``), compared with what a consumer ended with.

Nothing here runs a plugin or the fold: the expectations come from the lifecycles
the simulator generated, in the API's own field names.
"""
from __future__ import annotations

from typing import Mapping

from devtools.simulator import Expected
from searchlight_forward import search
from searchlight_forward.search import helpers
from searchlight_forward.model import documents


def field(document: Mapping, name: str):
    """A document's value for an oracle field (lists compared as sorted sets)."""
    if name == "rules":
        return sorted(r.get("id") for r in document.get("security_group_rules") or [])
    if name == "tags":
        return sorted(document.get("tags") or [])
    return document.get(name)


def differences(expected: Mapping[tuple, Expected], final: Mapping[tuple, dict]
                ) -> list[str]:
    """Mismatches between the oracle and ``final``: (type, id) -> the last envelope a
    consumer holds ({"operation", "project_id", "document"}). Empty if none."""
    problems = []
    for key, want in expected.items():
        got = final.get(key)
        if got is None:
            problems.append(f"{key}: never arrived")
            continue
        deleted = got["operation"] == "delete"
        if deleted != want.deleted:
            problems.append(f"{key}: deleted={deleted}, expected {want.deleted}")
            continue
        if got.get("project_id") != want.project_id:
            problems.append(f"{key}: project {got.get('project_id')}, "
                            f"expected {want.project_id}")
        if deleted:
            continue
        document = got.get("document") or {}
        wrong = {name: (value, field(document, name)) for name, value in want.fields.items()
                 if field(document, name) != value}
        if wrong:
            problems.append(f"{key}: (expected, got) {wrong}")
    problems += [f"{key}: not in the stream" for key in set(final) - set(expected)]
    return problems


def stored(es: search.Client, group: str, role: str = "admin"
           ) -> dict[tuple, dict]:
    """The index's final state as envelopes-like dicts, one role copy per resource."""
    es.indices.refresh(index=f"{group}-listener")
    found = {}
    for hit in helpers.scan(es, index=f"{group}-listener",
                            query={"query": {"term": {documents.ROLE_FIELD: role}}}):
        source = hit["_source"]
        deleted = bool(source.get(documents.DELETED_FIELD))
        found[(source["resource_type"], source["id"])] = {
            "operation": "delete" if deleted else "index",
            "project_id": source.get("project_id"),
            "document": None if deleted else source,
            "version": source.get(documents.VERSION_FIELD)}
    return found


def latest_per_resource(envelopes) -> tuple[dict[tuple, dict], list]:
    """The last envelope per resource, and every (key, previous, next) where a version
    went down (must be empty: contract 2). A resynchronisation counts as it is
    documented: a resource not sent between resync_begin and resync_end is gone."""
    last: dict[tuple, dict] = {}
    regressions = []
    resent: set | None = None
    for env in envelopes:
        if env.get("operation") == "resync_begin":
            resent = set()
            continue
        if env.get("operation") == "resync_end":
            for key in set(last) - (resent or set()):
                last[key] = dict(last[key], operation="delete", document=None)
            resent = None
            continue
        key = (env["resource_type"], env["id"])
        if resent is not None:
            resent.add(key)
        previous = last.get(key)
        if previous is not None and env["version"] < previous["version"]:
            regressions.append((key, previous["version"], env["version"]))
            continue
        last[key] = env
    return last, regressions
