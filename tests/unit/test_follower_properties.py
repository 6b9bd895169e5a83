"""Property tests of the follower core (searchlight_forward.changelog.follower), on a
model of the change log: no Elasticsearch, no threads, no timing.

The model keeps what Elasticsearch keeps: per shard, each resource's current role
copy at the ``_seq_no`` of its last write (a rewrite moves it up, so a reader that
falls behind sees intermediate states coalesced), tombstones until a purge moves the
horizon past them, and a rebuild that copies the current documents into a new index
with fresh ``_seq_no``s (the old index is gone at once). A live stream (the feed)
reads it from where it got, page by page; the follower is driven the way the
WebSocket server drives it (``hold``: live entries held aside while it reads) or the
way the delivery consumer does (``join``: the live stream is taken only exactly at
its position, and a full queue means catching up again). Hypothesis interleaves
writes, deletes, purges, rebuilds, live pages, catch-up pages and overflows.

The client applies what it is handed as the contract tells consumers to (keep the
highest version per resource; a delete removes it; a resynchronisation drops what it
did not mention) and must end with exactly the log's current state, having never
been handed an older version after a newer one, nor one write twice, nor anything
its cursor covered, and every delete after its cursor unless it was resynchronised.
"""
from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from searchlight_forward.changelog import follower as core
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.changelog.reader import IndexGone, Page
from searchlight_forward.model.documents import (ADMIN, DELETED_FIELD, ROLE_FIELD,
                                                 VERSION_FIELD)

T = "OS::Test::Thing"
PAGE = 2


class Log:
    """One resource group's index over time (see the module's docstring)."""

    def __init__(self, shards: int):
        self.generation = 0
        self.versions: collections.Counter = collections.Counter()
        self.history: list[tuple] = []      # (index, shard, seq, rid, version, deleted)
        self.index = ""
        self.shards = 0
        self.docs: dict[str, tuple] = {}    # rid -> (shard, seq, version, deleted)
        self.next_seq: list[int] = []
        self.horizon: Position | None = None
        self._new_index(shards)

    def _new_index(self, shards: int) -> None:
        self.generation += 1
        self.index = f"idx-{self.generation}"
        self.shards = shards
        self.next_seq = [0] * shards
        self.horizon = None

    def shard_of(self, rid: str) -> int:
        return int(rid[1:]) % self.shards

    def _put(self, rid: str, version: int, deleted: bool) -> None:
        shard = self.shard_of(rid)
        seq = self.next_seq[shard]
        self.next_seq[shard] += 1
        self.docs[rid] = (shard, seq, version, deleted)
        self.history.append((self.index, shard, seq, rid, version, deleted))

    def write(self, rid: str, delete: bool) -> None:
        current = self.docs.get(rid)
        if current is not None and current[3]:
            return                          # deleted for good (a tombstone wins)
        self.versions[rid] += 1
        self._put(rid, self.versions[rid], delete)

    def purge(self, upto: list[int]) -> None:
        """Tombstones at or below ``upto`` (per shard) are purged."""
        upto = [min(u, n - 1) for u, n in zip(upto, self.next_seq)]
        for rid, (shard, seq, _, deleted) in list(self.docs.items()):
            if deleted and seq <= upto[shard]:
                del self.docs[rid]
        mark = Position.of(self.index, upto)
        self.horizon = mark if self.horizon is None else self.horizon.merged(mark)

    def rebuild(self, shards: int) -> None:
        docs = sorted(self.docs.items(), key=lambda kv: (kv[1][1], kv[0]))
        self.docs = {}
        self._new_index(shards)
        for rid, (_, _, version, deleted) in docs:
            self._put(rid, version, deleted)

    def head(self) -> Position:
        return Position.of(self.index, [n - 1 for n in self.next_seq])

    def horizon_of(self, index: str) -> Position | None:
        return self.horizon if index == self.index else None

    def entry(self, rid: str, resync: bool) -> Entry:
        shard, seq, version, deleted = self.docs[rid]
        return Entry(self.index, shard, seq, {
            "resource_type": T, "id": rid, "project_id": "p", ROLE_FIELD: ADMIN,
            VERSION_FIELD: version, DELETED_FIELD: deleted}, resync=resync)

    def pages(self, after: Position, upto: Position, resync: bool = False,
              live_only: bool = False):
        """Like ChangeLog.pages, lazily: each page as the index is when it is read."""
        position = after
        pending = [s for s in range(upto.shards) if after.seq_nos[s] < upto.seq_nos[s]]
        while pending:
            if upto.index != self.index:
                raise IndexGone(upto.index)
            entries, still = [], []
            for shard in pending:
                hits = sorted((seq, rid) for rid, (s, seq, _, deleted) in self.docs.items()
                              if s == shard and position.seq_nos[shard] < seq
                              <= upto.seq_nos[shard] and not (live_only and deleted))
                for seq, rid in hits[:PAGE]:
                    entry = self.entry(rid, resync)
                    position = position.advanced(shard, seq)
                    entry.after = position
                    entries.append(entry)
                if len(hits) <= PAGE:
                    position = position.advanced(shard, upto.seq_nos[shard])
                else:
                    still.append(shard)
            pending = still
            yield Page(entries, position, resync)

    def state_at(self, cursor: Position | None) -> dict:
        """What a client at ``cursor`` has: each resource's newest write at or below
        it (live ones only)."""
        state: dict = {}
        if cursor is None:
            return state
        for index, shard, seq, rid, version, deleted in self.history:
            if index == cursor.index and cursor.covers(shard, seq):
                if deleted:
                    state.pop(rid, None)
                else:
                    state[rid] = version
        return state

    def truth(self) -> dict:
        return {rid: v for rid, (_, _, v, deleted) in self.docs.items() if not deleted}


class Feed:
    """The shared live stream: from where it got, up to the head, a page at a time;
    a rebuilt index is followed from its beginning, as a resynchronisation."""

    def __init__(self, log: Log):
        self.log = log
        self.position = log.head()
        self.resync_upto: Position | None = None
        self._pages = None

    def next_page(self) -> Page | None:
        log = self.log
        if self.position.index != log.index:
            self.position = Position.start(log.index, log.shards)
            self.resync_upto = log.head()
            self._pages = None
        if self._pages is None:
            head = log.head()
            if head == self.position or self.position.includes(head):
                return None
            resync = self.resync_upto is not None and not self.position.includes(
                self.resync_upto)
            self._pages = log.pages(self.position, head, resync=resync)
        page = next(self._pages, None)
        if page is None:
            self._pages = None
            return self.next_page()
        self.position = page.end
        return page


class Client:
    """Applies what it is handed as docs/forwarding.md tells consumers to, and checks
    the contract on the way."""

    def __init__(self, state: dict, cursor: Position | None):
        self.state = dict(state)
        self.cursor = cursor
        self.initial_cursor = self.first_cursor = cursor
        self.newest = dict(state)           # rid -> highest version handed (or had)
        self.seen: set = set()              # (index, shard, seq) handed
        self.deletes: set = set()           # rids handed a delete
        self.mentioned: set | None = None
        self.resyncs = 0
        self.connection_resyncs = 0

    def reconnect(self) -> None:
        """A new connection from ``cursor``: what it sends again of what the last one
        sent (a frame's cursor is the live stream's) is a duplicate, not an error."""
        self.seen = set()
        self.initial_cursor = self.cursor
        self.connection_resyncs = 0

    def hand(self, entry: Entry) -> None:
        where = (entry.index, entry.shard, entry.seq_no)
        assert where not in self.seen, f"{entry!r} handed twice"
        self.seen.add(where)
        c = self.initial_cursor
        if self.connection_resyncs == 0 and c is not None and entry.within(c):
            raise AssertionError(f"{entry!r} is covered by the cursor {c}")
        rid = entry.source["id"]
        assert entry.version >= self.newest.get(rid, 0), (
            f"{entry!r}: an older version after v{self.newest[rid]}")
        self.newest[rid] = entry.version
        if self.mentioned is not None:
            self.mentioned.add(rid)
        if entry.deleted:
            self.state.pop(rid, None)
            self.deletes.add(rid)
        else:
            self.state[rid] = entry.version
        if entry.after is not None:
            self.cursor = entry.after

    def resync_begin(self) -> None:
        """(What it re-sends, it may have sent before: the current state of all.)"""
        self.resyncs += 1
        self.connection_resyncs += 1
        self.mentioned = set()
        self.seen = set()

    def resync_end(self) -> None:
        for rid in set(self.state) - self.mentioned:
            del self.state[rid]
        self.mentioned = None


class Driver:
    """Drives a Follower the way the WebSocket server (``hold``) or the delivery
    consumer (``join``) does, one unit of work per ``step``."""

    def __init__(self, log: Log, feed: Feed, client: Client, hold: int,
                 max_rounds: int | None):
        self.log, self.feed, self.client = log, feed, client
        self.hold, self.max_rounds = hold, max_rounds
        self.queue: collections.deque = collections.deque()     # join: live pages
        self.dropped = False
        self.reconnects = 0
        self.connect(client.cursor)

    def connect(self, cursor: Position | None) -> None:
        self.follower = core.Follower(
            cursor, fresh=core.RESYNC, hold=self.hold, max_rounds=self.max_rounds,
            overflow_catches_up=self.hold == 0)
        self.pending: collections.deque = collections.deque()
        self.reading = None
        self.queue.clear()
        self.dropped = False
        if self.hold:
            # The WebSocket server attaches and takes its snapshot in one go.
            self.pending.extend(self.follower.snapshot(self.feed.position))

    @property
    def idle(self) -> bool:
        return (self.follower.live_now and not self.pending and self.reading is None
                and not self.queue and not self.dropped)

    def step(self) -> None:
        f = self.follower
        if self.reading is not None:
            try:
                page = next(self.reading, None)
            except IndexGone:
                self.reading = None
                self.pending.extend(f.index_gone())
                return
            if page is None:
                self.reading = None
                self.pending.extend(f.read_done())
            else:
                for action in f.page(page):
                    self.act(action)
                f.page_done(page)
            return
        if self.pending:
            self.act(self.pending.popleft())
            return
        if f.live_now and self.queue:
            page = self.queue.popleft()
            for action in f.page(page):
                self.act(action)
            f.page_done(page)
            return
        if f.live_now and self.dropped:
            self.dropped = False
            self.pending.extend(f.overflow("dropped by the live stream"))
            return
        if f.mode is core.Mode.CATCHING_UP:
            self.pending.extend(f.snapshot(self.feed.position))

    def act(self, action) -> None:
        f, client = self.follower, self.client
        if isinstance(action, core.CheckHorizon):
            for a in reversed(f.horizon(self.log.horizon_of(action.index))):
                self.pending.appendleft(a)
        elif isinstance(action, core.ResyncBegin):
            client.resync_begin()
        elif isinstance(action, core.ResyncEnd):
            client.resync_end()
        elif isinstance(action, core.Read):
            # The WebSocket server reads a full resync without tombstones.
            self.reading = self.log.pages(action.after, action.upto, action.resync,
                                          live_only=bool(self.hold) and action.resync)
        elif isinstance(action, core.Hand):
            for entry in action.entries:
                client.hand(entry)
                f.handed(entry)
            if self.hold and f.mode is core.Mode.JOINING:
                self.pending.extend(f.handover())
        elif isinstance(action, core.GoLive):
            if action.position is not None:
                client.cursor = action.position
            if self.hold:
                self.pending.extend(f.handover())
            elif f.can_join(self.feed.position):
                f.joined()
            else:
                self.pending.extend(f.join_refused())
        elif isinstance(action, core.GiveUp):
            # 4008: the client reconnects with the cursor of what it processed.
            self.reconnects += 1
            assert self.reconnects < 50, "reconnecting forever"
            client.reconnect()
            self.connect(client.cursor)

    def live_page(self, page: Page) -> None:
        f = self.follower
        if self.hold:
            for entry in page.entries:
                for action in f.live(entry):
                    self.act(action)
        elif f.live_now:
            if f.accepts(page.end) and not self.dropped:
                self.queue.append(page)
            else:
                self.dropped = True

    def overflow(self) -> None:
        f = self.follower
        if not f.live_now:
            return
        if self.hold:
            for action in f.overflow():
                self.act(action)
        else:
            self.queue.clear()
            self.dropped = True


OPS = st.sampled_from(["write", "write", "write", "delete", "feed", "feed", "step",
                       "step", "step", "step", "purge", "rebuild", "overflow"])


@st.composite
def scenarios(draw, stale: bool = False):
    """A log's past, the cursor, then what happens while the follower follows.
    ``stale``: the cursor is older than the tombstone horizon (no rebuild since)."""
    shards = draw(st.integers(1, 3))
    ops = ["write", "write", "delete"] if stale else [
        "write", "write", "write", "delete", "delete", "purge", "rebuild"]
    before = draw(st.lists(st.tuples(st.sampled_from(ops), st.integers(0, 5)),
                           max_size=25))
    if stale or draw(st.booleans()):
        before.append(("purge_all", 0))     # the cursor may be older than the horizon
    after = draw(st.lists(st.tuples(OPS, st.integers(0, 5)), max_size=60))
    cursor_kind = "current" if stale else draw(
        st.sampled_from(["none", "current", "current", "old"]))
    # (small numbers: cursors and purges inside the log, often before each other)
    cursor_seqs = draw(st.lists(st.integers(0, 4), min_size=3, max_size=3))  # quarters
    purge_at = draw(st.lists(st.integers(-1, 8), min_size=3, max_size=3))
    return shards, before, after, cursor_kind, cursor_seqs, purge_at


def run(scenario, hold: int, max_rounds: int | None) -> tuple[Log, Client, Driver]:
    shards, before, after, cursor_kind, cursor_seqs, purge_at = scenario
    log = Log(shards)
    old_cursor = None
    feed = driver = None

    def within(head: Position) -> Position:
        """A cursor 0 to 4 quarters of the way into the log, per shard."""
        return Position.of(head.index, [(h + 1) * q // 4 - 1
                                        for h, q in zip(head.seq_nos, cursor_seqs)])

    def apply(op: str, n: int) -> None:
        nonlocal old_cursor
        if op == "write":
            log.write(f"r{n}", False)
        elif op == "delete":                # mostly of a resource that lives
            live = sorted(log.truth())
            log.write(live[n % len(live)] if live else f"r{n}", True)
        elif op in ("purge", "purge_all"):
            upto = (purge_at + [-1] * log.shards)[:log.shards]
            if op == "purge_all":
                upto = list(log.head().seq_nos)
            # Tombstones are purged after days: long after the live stream read
            # them, and (a purge the horizon check cannot see) after the reader did.
            for reader in (feed, driver and driver.follower):
                if reader and reader.position is not None:
                    read = (reader.position.seq_nos if reader.position.index == log.index
                            else [-1] * log.shards)
                    upto = [min(u, r) for u, r in zip(upto, read)]
            log.purge(upto)
        elif op == "rebuild":
            old_cursor = within(log.head())
            log.rebuild(1 + n % 3)

    for op, n in before:
        apply(op, n)
    feed = Feed(log)                        # the server locates the log's end
    for op, n in before[:3]:                # written since: a client may be ahead
        if op == "write":
            log.write(f"r{n + 1}", False)
    if cursor_kind == "current":
        cursor = within(log.head())
    elif cursor_kind == "old" and old_cursor is not None:
        cursor = old_cursor
    else:
        cursor = None
    client = Client(log.state_at(cursor), cursor)
    driver = Driver(log, feed, client, hold, max_rounds)
    for op, n in after:
        if op == "feed":
            page = feed.next_page()
            if page is not None:
                driver.live_page(page)
        elif op == "step":
            for _ in range(n + 1):
                driver.step()
        elif op == "overflow":
            driver.overflow()
        else:
            apply(op, n)
    for _ in range(5000):                   # no more writes: everything arrives
        page = feed.next_page()
        if page is not None:
            driver.live_page(page)
            continue
        if driver.idle:
            break
        driver.step()
    else:
        raise AssertionError(f"never caught up: {driver.follower!r}")
    return log, client, driver


def check(log: Log, client: Client) -> None:
    assert client.state == log.truth()
    if client.resyncs == 0 and client.first_cursor is not None:
        # Every delete after the cursor (whose tombstone lives) was handed on.
        cursor = client.first_cursor
        for rid, (shard, seq, _, deleted) in log.docs.items():
            if deleted and log.index == cursor.index and not cursor.covers(shard, seq):
                assert rid in client.deletes, f"the delete of {rid} was not handed on"


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenarios(), st.integers(1, 6))
def test_held_live_entries_meet_the_catch_up_without_gap_or_repeat(scenario, hold):
    """The WebSocket server's way: hold live entries aside, run again on overflow."""
    log, client, _ = run(scenario, hold, max_rounds=3)
    check(log, client)


@SETTINGS
@given(scenarios())
def test_a_joining_consumer_meets_the_live_stream_without_gap_or_repeat(scenario):
    """The delivery consumer's way: join only exactly at the live stream's position;
    a full queue, a held sink or another index mean catching up again."""
    log, client, _ = run(scenario, hold=0, max_rounds=None)
    check(log, client)


@SETTINGS
@given(scenarios(stale=True), st.sampled_from([0, 1, 4]))
def test_a_cursor_older_than_the_horizon_misses_no_delete(scenario, hold):
    """Both ways, from a cursor whose deletes may have been purged since."""
    log, client, _ = run(scenario, hold, max_rounds=3 if hold else None)
    check(log, client)


# -- the rules, by example ----------------------------------------------------------

def at(*seqs, index="idx-1"):
    return Position.of(index, seqs)


def test_a_cursor_older_than_the_horizon_gets_a_full_resync():
    f = core.Follower(at(3))
    [check_] = f.snapshot(at(9))
    assert check_ == core.CheckHorizon("idx-1")
    begin, read = f.horizon(at(5))
    assert isinstance(begin, core.ResyncBegin) and read == core.Read(at(-1), at(9), True)
    end, live = f.read_done()
    assert end == core.ResyncEnd() and live == core.GoLive(at(9), True)


def test_a_cursor_of_another_index_gets_a_full_resync():
    f = core.Follower(at(3, index="old"))
    begin, read = f.snapshot(at(9))
    assert "rebuild" in begin.reason and read == core.Read(at(-1), at(9), True)


def test_a_cursor_ahead_of_the_live_stream_keeps_its_place():
    f = core.Follower(at(7, 2), hold=10)
    f.snapshot(at(5, 5))
    [read] = f.horizon(None)
    assert read == core.Read(at(7, 2), at(5, 5), False)
    assert f.read_done() == [core.GoLive(at(7, 5), False)]


def test_a_new_cursor_starts_where_the_configuration_says():
    assert core.Follower(fresh=core.NOW).snapshot(at(4))[0] == core.NewCursor(at(4))
    assert core.Follower(fresh=core.BEGINNING).snapshot(at(4))[0] == core.NewCursor(at(-1))
    given_ = core.Follower(fresh=core.BEGINNING, given=at(2)).snapshot(at(4))
    assert given_[0] == core.NewCursor(at(2))
    other = core.Follower(fresh=core.NOW, given=at(2, index="old")).snapshot(at(4))
    assert other[0] == core.NewCursor(at(4))


def test_too_many_rounds_give_up():
    f = core.Follower(at(0), hold=1, max_rounds=2, check_horizon=False)
    log = Log(1)
    for n in range(3):
        log.write(f"r{n}", False)
    for _ in range(2):
        f.snapshot(at(0))
        for e in log.pages(at(0), at(2)):
            for entry in e.entries:
                f.live(entry)
        assert isinstance(f.read_done()[-1], core.StartOver)
    assert isinstance(f.snapshot(at(2))[0], core.GiveUp)


@pytest.mark.parametrize("hold", [0, 3])
def test_a_group_without_an_index(hold):
    f = core.Follower(hold=hold, no_log=core.LIVE_EMPTY if hold else core.WAIT)
    assert f.snapshot(None) == ([core.GoLive(None, True)] if hold else [core.Wait()])
