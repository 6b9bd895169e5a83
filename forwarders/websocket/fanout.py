"""The fan-out: which connections each live entry goes to (in the event loop).

Connections are registered by project, plus the admins who asked for all projects.
Live searches of one project are also found by the resources they hold
(``protocol.Holders``), so a resource moved to another project still reaches them as
a ``left``; a live search still resuming does not know its members yet and is
offered every entry of its project's role copy. ``dispatch`` never waits for a
connection (``Connection.feed`` is synchronous), and an entry that cannot be handled
is recorded alone while the next ones go on.
"""
from __future__ import annotations

import collections
import logging
from typing import Any, Callable

from forwarders.websocket import protocol
from forwarders.websocket.protocol import Subscription
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.model.documents import ROLES

LOG = logging.getLogger(__name__)


class FanOut:
    """The registry of subscribed connections and the dispatch of live entries.

    ``entry_failed(entry, reason)``: told of each entry that could not be handed on
    (a dead letter, once per entry).
    """

    def __init__(self, entry_failed: Callable[[Entry, str], None]):
        self.entry_failed = entry_failed
        self._by_project: dict[Any, set] = collections.defaultdict(set)
        self._all_projects: set = set()
        #: live searches of one project: who holds which resource
        self.holders = protocol.Holders()
        #: live searches resuming: they hold every entry of their role until they
        #: know their members
        self._resuming_searches: set = set()

    def attach(self, client, sub: Subscription) -> None:
        if sub.all_projects:
            self._all_projects.add(client)
        else:
            self._by_project[sub.project_id].add(client)
            if sub.query is not None:
                self._resuming_searches.add(client)

    def resumed(self, client) -> None:
        """The client's resume handed over to live: its members are known."""
        self._resuming_searches.discard(client)

    def detach(self, client) -> None:
        self._all_projects.discard(client)
        self._resuming_searches.discard(client)
        sub = client.session.subscription
        if sub is not None and not sub.all_projects:
            members = self._by_project.get(sub.project_id)
            if members is not None:
                members.discard(client)
                if not members:
                    del self._by_project[sub.project_id]

    def dispatch(self, entries: list[Entry]) -> None:
        """Offer each entry to the connections that may see it.

        Synchronous, in the loop: no connection is attached or detached meanwhile,
        and a resume's snapshot of the dispatched position is taken between two
        pages. An entry that cannot be handled is recorded alone; the next ones are
        dispatched.
        """
        for entry in entries:
            problem = entry.problem
            if problem is not None:
                self.entry_failed(entry, problem)
                continue
            try:
                self._dispatch_entry(entry)
            except Exception as exc:  # noqa: BLE001 - one entry, never the page
                LOG.exception("dispatching %r failed", entry)
                self.entry_failed(entry, f"dispatch failed: {type(exc).__name__}: {exc}")

    def _dispatch_entry(self, entry: Entry) -> None:
        if entry.role not in ROLES:
            return
        for client in self._all_projects:
            client.feed(entry)
        members = self._by_project.get(entry.project_id)
        if members:
            for client in members:
                client.feed(entry)
        # Live searches of other projects holding the resource (it moved).
        others = self.holders.get(entry.key) if len(self.holders) else ()
        if self._resuming_searches:
            others = {*others, *self._resuming_searches}
        for client in others:
            if members is None or client not in members:
                client.feed(entry)
