"""One listener batch: plugins, then the indexer, then dead letters.

``handle`` returns only when every notification of the batch is safe: its change is
in Elasticsearch (or was stale), or it is in the dead-letter index with its reason.
Only then does oslo.messaging acknowledge the batch. Nothing else happens on this
path: forwarding reads the index, apart from the listener, so no sink or filter can
slow indexing or stop it. ``on_indexed`` (the announcer) is told which resource
groups were written, and returns at once.
"""
from __future__ import annotations

import collections
import logging
from typing import Callable, Iterable

from searchlight_forward import deadletter
from searchlight_forward.deadletter import DeadLetter, DeadLetterIndex
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.messages import UnreadableMessage, to_notification
from searchlight_forward.logs import Throttled, brief_traceback
from searchlight_forward.plugins import PayloadError, PluginSet
from searchlight_forward.retry import Retry

LOG = logging.getLogger(__name__)


class BatchProcessor:
    def __init__(self, plugins: PluginSet, indexer: Indexer,
                 dead_letters: DeadLetterIndex, dead_letter_retry: Retry,
                 groups: dict[str, str] | None = None,
                 on_indexed: Callable[[Iterable[str]], None] = lambda groups: None):
        self.plugins = plugins
        self.indexer = indexer
        self.dead_letters = dead_letters
        self.dead_letter_retry = dead_letter_retry
        self.groups = groups or {}
        self.on_indexed = on_indexed
        self.counters: collections.Counter = collections.Counter()
        self._log = Throttled(LOG)

    def handle(self, priority: str, messages: list[dict]) -> None:
        dead: list[DeadLetter] = []
        pairs = []
        for position, message in enumerate(messages):
            try:
                notification = to_notification(priority, message)
                plugin = self.plugins.route(notification.event_type)
                if plugin is None:
                    # Services publish many events no plugin is about (metrics,
                    # scheduler, ...): they are not errors.
                    self.counters["ignored"] += 1
                    continue
                changes = plugin.changes(notification)
                if not changes:
                    self.counters["ignored"] += 1   # e.g. image.send: nothing changed
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

        result = self.indexer.apply(pairs)
        for rejection in result.rejected:
            dead.append(DeadLetter(deadletter.INDEX, rejection.reason,
                                   messages[rejection.origin], priority))
        if dead:
            self.dead_letter_retry.call(lambda: self.dead_letters.write(dead))
            for letter in dead:
                LOG.warning("dead-lettered %s (%s): %s",
                            str(letter.message.get("event_type"))[:100], letter.stage,
                            letter.reason.splitlines()[0][:300])
        self.counters["notifications"] += len(messages)
        self.counters["dead_lettered"] += len(dead)
        written = {self.groups.get(change.resource_type) for _, change in pairs}
        written.discard(None)
        if written:
            self.on_indexed(written)
