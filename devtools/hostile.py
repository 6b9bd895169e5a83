"""Notifications of valid JSON and the wrong shape, for tests and the fault suite.

Each is a copy of a real-shaped simulated notification (``devtools.simulator``) with
a fresh message id and one value replaced by a value of another JSON type: an id or
project field most of the time (what readers route by), any field otherwise. The
listener must refuse each one with a reason (a dead letter) or index it as valid;
no reader may lose another resource's change because of one.
"""
from __future__ import annotations

import copy
import dataclasses
import random
import uuid

#: (label, value): values of every JSON type but the usual string
VALUES = (("a list", ["p-one", "p-two"]), ("a number", 12345), ("an object", {"id": "x"}),
          ("an empty list", []), ("a boolean", True), ("a float", 1.5),
          ("a nested list", [[1, 2], {"a": None}]))
#: the fields plugins read ids and projects from
ID_KEYS = frozenset({"tenant_id", "project_id", "owner", "id", "instance_id", "uuid",
                     "resource_id", "volume_id", "snapshot_id", "stack_identity",
                     "zone_id", "network_id", "router_id", "port_id"})


def paths(node, prefix=()):
    """Every path to a value inside a payload (dict keys and list positions)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from paths(value, prefix + (i,))


def wrong_shapes(rng: random.Random, notes: list, count: int) -> list[tuple[str, object]]:
    """``count`` (kind, SimulatedNotification) pairs made from ``notes``."""
    out = []
    for _ in range(count):
        note = rng.choice(notes)
        payload = copy.deepcopy(note.payload)
        every = list(paths(payload))
        if not every:
            continue
        hot = [p for p in every if p[-1] in ID_KEYS]
        path = rng.choice(hot if hot and rng.random() < 0.6 else every)
        label, value = rng.choice(VALUES)
        node = payload
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = copy.deepcopy(value)
        out.append((f"{path[-1]} {label}",
                    dataclasses.replace(note, payload=payload, message_id=str(uuid.uuid4()))))
    return out


def interleave(rng: random.Random, good: list, bad: list) -> list:
    """``good`` in its order with ``bad`` spread at random places among it."""
    slots = set(rng.sample(range(len(good) + len(bad)), len(bad)))
    good_it, bad_it = iter(good), iter(bad)
    return [next(bad_it) if i in slots else next(good_it)
            for i in range(len(good) + len(bad))]
