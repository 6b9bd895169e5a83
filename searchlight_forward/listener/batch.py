"""One listener batch: plugins, then the indexer, then dead letters.

``handle`` returns only when every notification of the batch is safe: its change is
in Elasticsearch (or was stale), or it is in the dead-letter index with its reason.
Only then does oslo.messaging acknowledge the batch. Nothing else happens on this
path: forwarding reads the index, apart from the listener, so no sink or filter can
slow indexing or stop it. ``on_indexed`` (the announcer) is told which resource
groups were written, and returns at once.

No notification may stop the stream. A batch the indexer fails on for a reason
that is not transient (a document the client cannot serialize, a bug met by one
payload) is split in halves until the notifications that cause it are found: those
become dead letters with the reason, the rest is indexed. Transient trouble is
retried inside the indexer, and a document that keeps failing while others are
written is rejected there. Should a batch fail anyway (the dead-letter write itself),
it goes back to RabbitMQ; a message seen failing ``max_failures`` times is then
dead-lettered at once instead of being processed again.
"""
from __future__ import annotations

import logging
from typing import Callable, Hashable, Iterable

import cachetools

from searchlight_forward import deadletter
from searchlight_forward.counters import Counters
from searchlight_forward.deadletter import DeadLetter, DeadLetterIndex
from searchlight_forward.indexer.indexer import BatchResult, Indexer, Rejection
from searchlight_forward.listener.messages import UnreadableMessage, to_notification
from searchlight_forward.logs import Throttled, brief_traceback, describe, short
from searchlight_forward.model.change import DocumentChange
from searchlight_forward.plugins import PayloadError, PluginSet, validation
from searchlight_forward.retry import Retry, Stopping

LOG = logging.getLogger(__name__)


class FailedMessages:
    """How often each message (by its oslo message_id) was in a batch that failed,
    and the last reason: bounded, in this process only."""

    def __init__(self, size: int = 10000):
        self._seen: cachetools.LRUCache = cachetools.LRUCache(maxsize=size)

    def failed(self, messages: list[dict], exc: BaseException) -> None:
        for message in messages:
            key = _message_id(message)
            if key:
                count, _ = self._seen.get(key, (0, ""))
                self._seen[key] = (count + 1, describe(exc))

    def count(self, message: dict) -> tuple[int, str]:
        key = _message_id(message)
        return self._seen.get(key, (0, "")) if key else (0, "")

    def forget(self, message: dict) -> None:
        key = _message_id(message)
        if key:
            self._seen.pop(key, None)


class BatchProcessor:
    def __init__(self, plugins: PluginSet, indexer: Indexer,
                 dead_letters: DeadLetterIndex, dead_letter_retry: Retry,
                 groups: dict[str, str] | None = None,
                 on_indexed: Callable[[Iterable[str]], None] = lambda groups: None,
                 max_failures: int = 5):
        self.plugins = plugins
        self.indexer = indexer
        self.dead_letters = dead_letters
        self.dead_letter_retry = dead_letter_retry
        self.groups = groups or {}
        self.on_indexed = on_indexed
        self.max_failures = max_failures
        self.failures = FailedMessages()
        self.counters: Counters = Counters()
        self._log = Throttled(LOG)

    def handle(self, priority: str, messages: list[dict]) -> None:
        try:
            self._handle(priority, messages)
        except Stopping:
            raise
        except Exception as exc:
            self.counters.add("failed_batches")
            self.failures.failed(messages, exc)
            raise

    def _handle(self, priority: str, messages: list[dict]) -> None:
        dead: list[DeadLetter] = []
        pairs = []
        for position, message in enumerate(messages):
            count, reason = self.failures.count(message)
            if count >= self.max_failures:
                # Its batches failed this often: it goes no further, whatever it is.
                dead.append(DeadLetter(deadletter.BATCH, f"its batch failed {count} times "
                                       f"(last: {reason}); not processed again",
                                       message, priority))
                self.failures.forget(message)
                continue
            try:
                notification = to_notification(priority, message)
                plugin = self.plugins.route(notification.event_type)
                if plugin is None:
                    # Services publish many events no plugin is about (metrics,
                    # scheduler, ...): they are not errors.
                    self.counters.add("ignored")
                    continue
                changes = plugin.changes(notification)
                for change in changes:
                    # Before anything is written: what readers route on must hold.
                    validation.check(change, plugin.mapping)
                if not changes:
                    self.counters.add("ignored")   # e.g. image.send: nothing changed
                pairs.extend((position, change) for change in changes)
            except UnreadableMessage as exc:
                dead.append(DeadLetter(deadletter.PARSE, str(exc), message, priority))
            except PayloadError as exc:
                dead.append(DeadLetter(deadletter.PLUGIN, str(exc), message, priority))
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the stream
                self._log.failure(f"plugin on {str(message.get('event_type'))[:100]}", exc,
                                  "dead-lettered")
                dead.append(DeadLetter(deadletter.PLUGIN, "plugin raised:\n"
                                       + brief_traceback(exc, 5), message, priority))

        result = self._index(pairs)
        for rejection in result.rejected:
            dead.append(DeadLetter(deadletter.INDEX, rejection.reason,
                                   messages[rejection.origin], priority))
        if dead:
            self.dead_letter_retry.call(lambda: self.dead_letters.write(dead))
            for letter in dead:
                LOG.warning("dead-lettered %s (%s): %s",
                            str(letter.message.get("event_type"))[:100], letter.stage,
                            letter.reason.splitlines()[0][:300])
        self.counters.add("notifications", len(messages))
        self.counters.add("dead_lettered", len(dead))
        written = {self.groups.get(change.resource_type) for _, change in pairs}
        written.discard(None)
        if written:
            self.on_indexed(written)

    def bad_priority(self, priority: str, messages: list[dict]) -> None:
        """Dead-letter messages oslo.messaging would drop for their priority."""
        reason = (f"priority {priority} is not one oslo.messaging dispatches (audit, "
                  f"critical, debug, error, info, sample, warn); it would have been "
                  f"dropped")
        self.dead_letter_retry.call(lambda: self.dead_letters.write(
            [DeadLetter(deadletter.DISPATCH, reason, m, priority) for m in messages]))
        self._log.failure("dispatch", ValueError(reason), "dead-lettered",
                          with_traceback=False)
        self.counters.add("bad_priority", len(messages))
        self.counters.add("dead_lettered", len(messages))

    def _index(self, pairs: list[tuple[Hashable, DocumentChange]]) -> BatchResult:
        """The indexer's result for ``pairs``; the notifications whose changes make it
        fail for good (not transient: it retries those itself) are found by bisection
        and returned as rejected. Writes are idempotent, so a half that had been
        partly written before the failure is simply written again."""
        try:
            return self.indexer.apply(pairs)
        except Stopping:
            raise
        except Exception as exc:  # noqa: BLE001 - content-caused: isolate, never requeue
            origins = sorted({origin for origin, _ in pairs})
            if len(origins) == 1:
                self.counters.add("isolated")
                self._log.failure("indexing one notification", exc, "dead-lettered")
                reason = f"cannot be indexed: {describe(exc)}"
                return BatchResult(rejected=[Rejection(o, c, reason) for o, c in pairs])
            self.counters.add("bisections")
            half = set(origins[:len(origins) // 2])
            result = BatchResult()
            for part in ([p for p in pairs if p[0] in half],
                         [p for p in pairs if p[0] not in half]):
                found = self._index(part)
                result.results.extend(found.results)
                result.rejected.extend(found.rejected)
            return result


def _message_id(message: dict) -> str:
    meta = message.get("metadata") if isinstance(message, dict) else None
    return short((meta or {}).get("message_id") or "", 100) if isinstance(meta, dict) else ""
