"""One listener batch: plugins, then the indexer, then dead letters, then forwarders.

``handle`` returns only when every notification of the batch is safe: its change is
in Elasticsearch (or was stale), or it is in the dead-letter index with its reason.
Only then does oslo.messaging acknowledge the batch.
"""
from __future__ import annotations

import collections
import logging
import traceback
from typing import Callable

from searchlight_forward import deadletter
from searchlight_forward.backoff import Backoff
from searchlight_forward.deadletter import DeadLetter, DeadLetterIndex
from searchlight_forward.indexer.indexer import BatchResult, Indexer
from searchlight_forward.listener.messages import UnreadableMessage, to_notification
from searchlight_forward.plugins import PayloadError, PluginSet

LOG = logging.getLogger(__name__)

Forward = Callable[[BatchResult], None]


class BatchProcessor:
    def __init__(self, plugins: PluginSet, indexer: Indexer,
                 dead_letters: DeadLetterIndex, backoff: Backoff,
                 forward: Forward | None = None):
        self.plugins = plugins
        self.indexer = indexer
        self.dead_letters = dead_letters
        self.backoff = backoff
        self.forward = forward
        self.counters: collections.Counter = collections.Counter()

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
            except Exception:
                # A plugin bug must not stop the stream: keep the evidence instead.
                LOG.exception("plugin failed on %s", message.get("event_type"))
                dead.append(DeadLetter(deadletter.PLUGIN, "plugin raised:\n"
                                       + traceback.format_exc(limit=5), message, priority))

        result = self.indexer.apply(pairs)
        for rejection in result.rejected:
            dead.append(DeadLetter(deadletter.INDEX, rejection.reason,
                                   messages[rejection.origin], priority))
        if dead:
            self.backoff.until_done(lambda: self.dead_letters.write(dead),
                                    "dead-letter write",
                                    "The batch stays unacknowledged until it is written.")
            for letter in dead:
                LOG.warning("dead-lettered %s (%s): %s", letter.message.get("event_type"),
                            letter.stage, letter.reason.splitlines()[0])
        self.counters["notifications"] += len(messages)
        self.counters["dead_lettered"] += len(dead)
        if self.forward is not None:
            self.forward(result)
