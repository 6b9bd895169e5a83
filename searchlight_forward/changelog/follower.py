"""Following a change log from a cursor, sans I/O: catch up, then go live.

Every reader that keeps its own place in the log (a delivery pipeline's durable
cursor, a WebSocket connection's resume) does the same thing: read from its cursor up
to where the shared live stream has got, then take the live stream from there, with
no gap and never an entry it had already. A cursor of another index (a rebuild) or
one older than the tombstone horizon (deletes it never read were purged) gets a full
resynchronisation instead. This module is that logic, once, like ``websockets``'
sans-I/O protocol: no Elasticsearch, no threads, no asyncio, no clock. The driver
tells a ``Follower`` what happened and carries out the actions it answers:

====================================  ==========================================
the driver tells                       the follower answers
====================================  ==========================================
``snapshot(P)``: live stream is at P   ``NewCursor``, ``CheckHorizon(index)``,
                                       ``ResyncBegin``, ``Read(A, P, resync)``,
                                       ``Wait`` (no index yet), ``GiveUp``
``horizon(H)``                         ``ResyncBegin``, ``Read``
``page(page)`` (a page of a ``Read``)  ``Hand(entries)``: hand these on, in order
``handed(entry)``, ``page_done(page)`` (the position moves past them)
``read_done()``                        ``ResyncEnd``, then ``GoLive``,
                                       ``StartOver`` or ``GiveUp``
``index_gone()``                       ``StartOver``
``live(entry)``                        while catching up: held aside (up to
                                       ``hold``); live: ``Hand((entry,))`` or nothing
``handover()`` (after ``GoLive``)      ``Hand`` one held entry, ``Live``, ``GiveUp``
``joined()`` / ``join_refused()``      (a driver that joins a shared stream itself)
``overflow()``: the live queue is full ``StartOver`` (catch up again) or ``GiveUp``
====================================  ==========================================

Two ways to meet the live stream without a gap, both here:

* **hold** (``hold > 0``, the WebSocket server): from the snapshot on, the driver
  offers every live entry with ``live``; they are held aside while the pages up to
  the snapshot are read, then handed over (``handover``) before going live. If more
  than ``hold`` arrive, they are dropped and another round reads from where this one
  got (at most ``max_rounds`` rounds, then ``GiveUp``).
* **join** (``hold == 0``, the delivery consumer): after reading up to the snapshot
  the driver asks the shared stream to take it (``can_join``: only exactly at the
  stream's position); refused, it takes another snapshot and reads on.

A position only moves past what the driver says it handed on (``handed``) or what a
page read covered (``page_done``): a driver whose sink stops mid-page keeps its place.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
from typing import Iterable

from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position

# -- how a follower without a cursor starts -------------------------------------
RESYNC = "resync"           # the current state of everything (a full resync)
BEGINNING = "beginning"     # every entry of the index, not as a resync
NOW = "now"                 # from the live stream's position: only what comes next

# -- when the group has no index at the snapshot --------------------------------
WAIT = "wait"               # ``Wait``: take another snapshot later
LIVE_EMPTY = "live"         # go live at once: the index will arrive whole, live


class Mode(str, enum.Enum):
    CATCHING_UP = "catching_up"   # needs a snapshot
    HORIZON = "horizon"           # waits for ``horizon``
    READING = "reading"           # reads pages up to the snapshot
    JOINING = "joining"           # read up to it: joining the live stream
    LIVE = "live"
    GAVE_UP = "gave_up"


# -- actions ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NewCursor:
    """A follower without a cursor starts here (not a resync): record it."""
    position: Position


@dataclasses.dataclass(frozen=True)
class CheckHorizon:
    """Find the tombstone horizon of ``index`` and call ``horizon``."""
    index: str


@dataclasses.dataclass(frozen=True)
class ResyncBegin:
    """A full resynchronisation starts: the current state of everything follows;
    what was not mentioned by ``ResyncEnd`` is gone."""
    reason: str


@dataclasses.dataclass(frozen=True)
class ResyncEnd:
    pass


@dataclasses.dataclass(frozen=True)
class Read:
    """Read the entries ``after < _seq_no <= upto`` (``resync``: as a full
    resynchronisation), giving each page to ``page``, then call ``read_done``
    (or ``index_gone`` if the index went away)."""
    after: Position
    upto: Position
    resync: bool


@dataclasses.dataclass(frozen=True)
class Hand:
    """Hand these entries on, in this order; call ``handed`` for each one taken."""
    entries: tuple


@dataclasses.dataclass(frozen=True)
class GoLive:
    """Caught up to ``position``: go live (hold: ``handover`` the held entries
    first; join: join the shared stream, then ``joined`` or ``join_refused``).
    ``full``: this catch-up began with a full resynchronisation."""
    position: Position | None
    full: bool


@dataclasses.dataclass(frozen=True)
class Live:
    """The held entries were handed over: live from now on."""


@dataclasses.dataclass(frozen=True)
class StartOver:
    """Take a new snapshot and catch up again from the position (``wait``: after a
    while: the live stream has to find the group's new index first)."""
    reason: str
    wait: bool = False


@dataclasses.dataclass(frozen=True)
class Wait:
    """The group has no index: take a snapshot again later."""


@dataclasses.dataclass(frozen=True)
class GiveUp:
    """Cannot keep up: too many rounds, or the live stream overflowed."""
    reason: str


Action = (NewCursor | CheckHorizon | ResyncBegin | ResyncEnd | Read | Hand | GoLive
          | Live | StartOver | Wait | GiveUp)


def advance(position: Position | None, entry: Entry) -> Position | None:
    """``position`` moved past ``entry`` (an entry of another index moves it to that
    index: the reader's position right after the entry)."""
    if position is not None and position.index == entry.index \
            and entry.shard < position.shards:
        return position.advanced(entry.shard, entry.seq_no)
    if entry.after is not None:
        return entry.after
    return position


class Follower:
    """One reader's way through the change log: see the module's docstring.

    ``position``: the cursor (None: none yet, started as ``fresh`` says; ``given``:
    a position to start at instead when it names the live stream's index).
    ``resyncing``: a resynchronisation begun and not ended (a restarted driver
    resumes it). ``hold``, ``max_rounds``: the hold way (``hold == 0``: join).
    ``check_horizon``: ask for the tombstone horizon before reading from a cursor.
    ``no_log``: what a snapshot of a group without an index means (``WAIT`` or
    ``LIVE_EMPTY``). ``overflow_catches_up``: a full live queue means catching up
    again (True) or giving up (False).
    """

    def __init__(self, position: Position | None = None, *, fresh: str = RESYNC,
                 given: Position | None = None, resyncing: bool = False,
                 hold: int = 0, max_rounds: int | None = None,
                 check_horizon: bool = True, no_log: str = WAIT,
                 overflow_catches_up: bool = True):
        if fresh not in (RESYNC, BEGINNING, NOW):
            raise ValueError(f"fresh: {fresh!r}")
        self.position = position
        self.fresh = fresh
        self.given = given
        self.resyncing = resyncing
        self.hold = hold
        self.max_rounds = max_rounds
        self.check_horizon = check_horizon
        self.no_log = no_log
        self.overflow_catches_up = overflow_catches_up
        self.mode = Mode.CATCHING_UP
        #: some catch-up began with a full resynchronisation
        self.full = False
        self.rounds = 0
        self.held: collections.deque[Entry] = collections.deque()
        self.held_overflow = False
        self.target: Position | None = None

    def __repr__(self) -> str:
        return (f"Follower({self.mode.value} at {self.position}, target {self.target}, "
                f"{len(self.held)} held{' overflowed' if self.held_overflow else ''})")

    # -- catching up -----------------------------------------------------------------

    @property
    def live_now(self) -> bool:
        return self.mode is Mode.LIVE

    @property
    def holding(self) -> bool:
        """Live entries offered now are held aside (caught up not yet)."""
        return self.hold > 0 and self.mode is not Mode.LIVE

    def snapshot(self, target: Position | None) -> list[Action]:
        """A round of catching up starts: the live stream has handed on everything up
        to ``target`` (None: the group has no index). With ``hold``, every live entry
        after it must be offered to ``live`` from now on."""
        if self.mode is Mode.GAVE_UP:
            return [GiveUp("gave up already")]
        self.rounds += 1
        if self.max_rounds is not None and self.rounds > self.max_rounds:
            self.mode = Mode.GAVE_UP
            return [GiveUp(f"still behind after {self.max_rounds} rounds")]
        self.held.clear()
        self.held_overflow = False
        self.target = target
        if target is None:
            if self.no_log == LIVE_EMPTY:
                self.full = True               # the index will arrive whole, live
                self.mode = Mode.JOINING
                return [GoLive(None, True)]
            self.mode = Mode.CATCHING_UP
            return [Wait()]
        if self.position is None:
            if self.fresh == RESYNC:
                return self._resync("no cursor: the current state of everything")
            if self.given is not None and self.given.same_log(target):
                self.position = self.given
            elif self.fresh == BEGINNING:
                self.position = Position.start(target.index, target.shards)
            else:
                self.position = target
            return [NewCursor(self.position), *self._read()]
        if not self.position.same_log(target):
            return self._resync(f"the group's index is now {target.index} "
                                f"(was {self.position.index}): a rebuild")
        if self.check_horizon:
            self.mode = Mode.HORIZON
            return [CheckHorizon(target.index)]
        return self._read()

    def horizon(self, horizon: Position | None) -> list[Action]:
        """The tombstone horizon of the snapshot's index (None: nothing purged)."""
        if self.mode is not Mode.HORIZON:
            return []
        if horizon is not None and horizon.same_log(self.position) \
                and self.position.behind(horizon):
            return self._resync("the cursor is older than the tombstone retention: "
                                "deletes it never read were purged")
        return self._read()

    def _resync(self, reason: str) -> list[Action]:
        target = self.target
        self.position = Position.start(target.index, target.shards)
        self.resyncing = True
        self.full = True
        return [ResyncBegin(reason), *self._read()]

    def _read(self) -> list[Action]:
        self.mode = Mode.READING
        return [Read(self.position, self.target, self.resyncing)]

    def fresh_entries(self, entries: Iterable[Entry]) -> tuple:
        """The entries not covered by the position yet, in order."""
        position = self.position
        return tuple(e for e in entries if not e.within(position))

    def page(self, page) -> list[Action]:
        """A page of entries (of a ``Read``, or the live stream's for a joined
        driver): what to hand on."""
        entries = self.fresh_entries(page.entries)
        return [Hand(entries)] if entries else []

    def handed(self, entry: Entry) -> None:
        """The driver handed ``entry`` on (or recorded why it could not)."""
        self.position = advance(self.position, entry)

    def page_done(self, page) -> None:
        """Every entry of ``page`` was handed on: the position covers its range."""
        if self.position is not None and page.end.same_log(self.position):
            self.position = self.position.merged(page.end)

    def read_done(self) -> list[Action]:
        """Every page of the ``Read`` was handed on."""
        if self.mode is not Mode.READING:
            return []
        actions: list[Action] = []
        if self.position is not None and self.position.same_log(self.target):
            self.position = self.position.merged(self.target)
        if self.resyncing:
            self.resyncing = False
            actions.append(ResyncEnd())
        if self.held_overflow:
            self.mode = Mode.CATCHING_UP
            actions.append(StartOver("live entries overflowed while catching up"))
            return actions
        self.mode = Mode.JOINING
        actions.append(GoLive(self.position, self.full))
        return actions

    def index_gone(self) -> list[Action]:
        """The index being read went away (a rebuild finished): once the live stream
        has moved to the new one, a snapshot there resynchronises."""
        self.mode = Mode.CATCHING_UP
        return [StartOver("the index went away", wait=True)]

    # -- meeting the live stream ------------------------------------------------------

    def can_join(self, live: Position | None) -> bool:
        """May a joining driver take the live stream at ``live``? Only exactly there:
        anything else is a gap or a repeat."""
        return (self.mode is Mode.JOINING and live is not None
                and self.position is not None and self.position == live)

    def joined(self) -> list[Action]:
        self.mode = Mode.LIVE
        self.held.clear()
        return [Live()]

    def join_refused(self) -> list[Action]:
        """The live stream moved on meanwhile: read on up to it."""
        if self.mode is Mode.JOINING:
            self.mode = Mode.CATCHING_UP
        return [StartOver("the live stream moved on")]

    def handover(self) -> list[Action]:
        """After ``GoLive`` (hold): the next held entry, or ``Live`` when none is left
        (the driver keeps offering live entries, which are held meanwhile)."""
        if self.mode is not Mode.JOINING:
            return []
        if self.held_overflow:
            self.mode = Mode.GAVE_UP
            self.held.clear()
            return [GiveUp("live entries overflowed while handing over")]
        while self.held:
            entry = self.held.popleft()
            if not entry.within(self.position):
                return [Hand((entry,))]
        return self.joined()

    def live(self, entry: Entry) -> list[Action]:
        """An entry of the live stream (one the driver's reader may see). Held aside
        while catching up; handed on when live."""
        if self.mode is Mode.LIVE:
            if entry.within(self.position):
                return []
            return [Hand((entry,))]
        if self.hold > 0 and self.mode is not Mode.GAVE_UP and not self.held_overflow:
            if len(self.held) >= self.hold:
                self.held_overflow = True      # read again past these instead
                self.held.clear()
            else:
                self.held.append(entry)
        return []

    def accepts(self, end: Position) -> bool:
        """Can a live page ending at ``end`` follow this position (same index)?"""
        position = self.position
        return position is not None and end.same_log(position)

    def overflow(self, reason: str = "the live queue is full") -> list[Action]:
        """The driver could not take the live stream (its queue overflowed, its sink
        holds, the stream moved to another index)."""
        if self.mode is Mode.GAVE_UP:
            return []
        if not self.overflow_catches_up:
            self.mode = Mode.GAVE_UP
            return [GiveUp(reason)]
        self.mode = Mode.CATCHING_UP
        self.held.clear()
        return [StartOver(reason)]
