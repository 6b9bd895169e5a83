"""How a batch of messages is cut into Zaqar posts within its limits (pure)."""
from __future__ import annotations

from typing import Iterable, Sequence

#: a post body is '{"messages":[' m1 ',' m2 ']}', each message serialized once
#: (compact JSON, UTF-8): what is measured is what is sent
OPEN, SEP, CLOSE = b'{"messages":[', b",", b"]}"
BODY_OVERHEAD = len(OPEN) + len(CLOSE)
SEPARATOR = len(SEP)


def post_body(messages: Sequence[bytes]) -> bytes:
    """The body of a post of these serialized messages."""
    return OPEN + SEP.join(messages) + CLOSE


def post_size(item_sizes: Iterable[int]) -> int:
    """Bytes of the body of a post of messages of these sizes."""
    sizes = list(item_sizes)
    return BODY_OVERHEAD + sum(sizes) + SEPARATOR * max(len(sizes) - 1, 0)


def plan_batches(item_sizes: Sequence[int], max_bytes: int, max_count: int
                 ) -> tuple[list[list[int]], list[int]]:
    """Split messages (by serialized size, in order) into posts within the limits.

    Returns ``(batches, too_big)``: batches are lists of indices, in order, each with
    at most ``max_count`` messages and a body of at most ``max_bytes``; ``too_big`` are
    the indices of messages that exceed ``max_bytes`` even alone (never postable).
    Greedy, so the order of the messages is kept across batches.
    """
    if max_count < 1 or max_bytes < 1:
        raise ValueError("max_count and max_bytes must be positive")
    batches: list[list[int]] = []
    too_big: list[int] = []
    current: list[int] = []
    current_bytes = BODY_OVERHEAD
    for index, size in enumerate(item_sizes):
        if BODY_OVERHEAD + size > max_bytes:
            too_big.append(index)
            continue
        added = size + (SEPARATOR if current else 0)
        if current and (len(current) >= max_count or current_bytes + added > max_bytes):
            batches.append(current)
            current, current_bytes = [], BODY_OVERHEAD
            added = size
        current.append(index)
        current_bytes += added
    if current:
        batches.append(current)
    return batches, too_big


def done_prefix(done: Sequence[bool]) -> int:
    """How many leading entries are True."""
    for index, flag in enumerate(done):
        if not flag:
            return index
    return len(done)
