"""Tenants' subscriptions as a source of the delivery service's pipelines.

Every ``[subscriptions] refresh_interval`` the service reads the catalog: each
active subscription that is sent (not a feed, not an ended WebSub subscription) is
one pipeline (``Catalog.pipeline_for``), revised whenever the subscription is
written. The live process with the smallest id sends pending confirmation
requests, ends expired WebSub subscriptions and forgets the cursors of deleted
subscriptions.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from forwarders.pipeline.source import Offer, PipelineSource
from forwarders.subscriptions import catalog as catalog_mod
from forwarders.subscriptions.catalog import Catalog
from searchlight_forward.model.documents import ROLES


class SubscriptionPipelines(PipelineSource):
    roles = ROLES            # each reads its creator's role copy
    tenants = True

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.refresh_interval = catalog.settings.refresh_interval
        self._stored: list = []
        self._offers: dict[str, Offer] | None = None
        self._last_forget = -math.inf

    def ensure(self) -> None:
        self.catalog.store.ensure()

    def offers(self) -> dict[str, Offer]:
        """What to deliver; the same dict again while the subscriptions read are the
        same (the catalog's cache), so that ten thousand are not looked at again
        every turn."""
        stored = self.catalog.read()
        if stored is self._stored and self._offers is not None:
            return self._offers
        self._stored = stored
        out = {}
        for name, (revision, found, groups) in self.catalog.wanted(self._stored).items():
            sub = found.subscription
            out[name] = Offer(revision, tuple(groups),
                              lambda sub=sub: self.catalog.pipeline_for(sub),
                              {"id": sub.id, "protocol": sub.protocol,
                               "project_id": sub.project_id, "state": sub.state})
        self._offers = out
        return out

    def refused(self, name: str, reason: str) -> None:
        self.catalog.disable(name[len(catalog_mod.PREFIX):], f"cannot be delivered: {reason}")

    def lead(self, forget_cursors: Callable[[str, set[str]], None]) -> None:
        self.catalog.confirm_pending(self._stored)
        self.catalog.end_websub(self._stored)
        if time.monotonic() - self._last_forget >= catalog_mod.REREAD:
            self._last_forget = time.monotonic()
            forget_cursors(catalog_mod.PREFIX, {catalog_mod.pipeline_name(s.subscription.id)
                                                for s in self._stored})

    def close(self) -> None:
        self.catalog.close()
