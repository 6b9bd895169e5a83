"""A view of forwarders.ini: what a reader-facing way out serves (pure).

A pipeline delivers: its filters, then a sink, from its own durable cursor. A view
delivers nothing by itself: it says what the WebSocket server, POST /v1/search, the
Atom feeds and tenants' subscriptions show of each change, each reader getting the
role copy the view's ``role`` rule gives it::

    [view:horizon]
    filters = unsearchable secrets      # the same [filter:...] sections
    resource_types = OS::Nova::Server   # optional; default every type
    role = caller                       # caller (default) or user

``role = caller``: an admin gets the admin copy, anyone else the user copy (the
indexer left the admin-only fields out of it). ``role = user``: everyone gets the
user copy, admins included. Which view each way out serves is an option of the main
configuration (``[websocket] view``, ``[subscriptions] view``; ``choose``).
"""
from __future__ import annotations

import dataclasses

from forwarders.filters.base import Filter
from searchlight_forward.model.documents import ADMIN, USER

CALLER = "caller"
#: the role rules a view may have
ROLE_RULES = (CALLER, USER)

#: the ways out that serve a view, and the option of the main configuration that
#: names it: (group, option). Search serves the websocket's view, feeds the
#: subscriptions' (as their filters always were).
WEBSOCKET, SUBSCRIPTIONS = "websocket", "subscriptions"
WAYS = {WEBSOCKET: "the WebSocket server and POST /v1/search",
        SUBSCRIPTIONS: "tenants' subscriptions and Atom feeds"}
NONE = "none"


@dataclasses.dataclass(frozen=True)
class View:
    name: str
    filters: tuple[Filter, ...] = ()
    resource_types: frozenset[str] | None = None     # None: every type
    role: str = CALLER

    def copy_for(self, admin: bool) -> str:
        """The role copy a reader gets: ``admin`` is whether it could have the
        admin copy (an admin token; a subscription an admin made)."""
        return ADMIN if admin and self.role == CALLER else USER

    @property
    def roles(self) -> tuple[str, ...]:
        """The role copies this view may serve."""
        return (ADMIN, USER) if self.role == CALLER else (USER,)

    def wants(self, resource_type: str) -> bool:
        return self.resource_types is None or resource_type in self.resource_types

    def apply(self, resource_type: str, document: dict) -> dict:
        for f in self.filters:
            document = f.apply(resource_type, document)
        return document


class ViewChoiceError(ValueError):
    """The main configuration names a view forwarders.ini lacks, or leaves the choice
    ambiguous: the message names the option to set."""


def choose(views: dict[str, View], way: str, wanted: str = "",
           upgraded: dict[str, list[str]] | None = None, path: str = "forwarders.ini"
           ) -> View | None:
    """The view ``way`` (``websocket`` or ``subscriptions``) serves.

    ``wanted`` is ``[<way>] view``: a view's name, ``none`` (no view: role
    separation only for the WebSocket server and search; subscriptions are not
    delivered), or empty: the view named ``<way>``, else the only view, else none
    if there is none. An old-form file (``upgraded``: pipelines that ended in the
    ``websocket`` or ``subscriptions`` sink, read as views) is read as it was: the
    view it marked for this way out, or none."""
    wanted = (wanted or "").strip()
    option = f"[{way}] view"
    if wanted.lower() == NONE:
        return None
    if wanted:
        if wanted not in views:
            raise ViewChoiceError(
                f"{option} = {wanted}: {path} has no [view:{wanted}] section "
                f"(views: {', '.join(sorted(views)) or 'none'}); add it or set "
                f"{option} to one of them")
        return views[wanted]
    if upgraded:        # an old-form file: as it was read before views existed
        marked = upgraded.get(way, [])
        if len(marked) > 1:
            raise ViewChoiceError(
                f"pipelines {', '.join(marked)} of {path} all ended in the {way} sink "
                f"(now read as views): name the one {WAYS[way]} serve with "
                f"{option} = <name> in the main configuration")
        return views[marked[0]] if marked else None
    if way in views:
        return views[way]
    if len(views) == 1:
        return next(iter(views.values()))
    if not views:
        return None
    raise ViewChoiceError(
        f"{path} has several views ({', '.join(sorted(views))}) and none is named "
        f"{way}: name the one {WAYS[way]} serve with {option} = <name> in the main "
        f"configuration (or {option} = none)")
