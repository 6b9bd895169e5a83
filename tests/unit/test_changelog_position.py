"""Change-log positions and their cursor text (pure)."""
import pytest

from searchlight_forward.changelog.position import Position

INDEX = "searchlight-20260302120000000000"


def test_cursor_text_round_trip_one_and_several_shards():
    one = Position.parse(f"{INDEX}:42")
    assert one == Position(INDEX, (42,)) and str(one) == f"{INDEX}:42"
    three = Position.parse("x:-1,7,0")
    assert three.seq_nos == (-1, 7, 0) and three.shards == 3 and str(three) == "x:-1,7,0"


@pytest.mark.parametrize("bad", ["", ":1", "x:", "x:1.5", "x: 1", "x:99999999999999999999",
                                 "x:1,", "x:1,,2", "x:-2", None, 3, "a b:1"])
def test_bad_cursors_are_refused(bad):
    with pytest.raises(ValueError):
        Position.parse(bad)


def test_covers_includes_and_behind_are_per_shard():
    p = Position("x", (5, -1, 9))
    assert p.covers(0, 5) and not p.covers(0, 6) and not p.covers(1, 0)
    assert p.includes(Position("x", (5, -1, 8)))
    assert not p.includes(Position("x", (6, -1, 0)))
    assert not p.includes(Position("y", (5, -1, 9)))          # another index
    assert not p.includes(Position("x", (5, -1)))             # other shards
    assert p.behind(Position("x", (7, -1, 3))) == [0]
    assert Position("x", (1, 2)).lowest(Position("x", (3, 0))) == Position("x", (1, 0))


def test_advancing_never_goes_back():
    p = Position.start("x", 2)
    assert p == Position("x", (-1, -1))
    q = p.advanced(1, 10)
    assert q.seq_nos == (-1, 10) and q.advanced(1, 3) is q
    assert q.merged((4, 2)) == Position("x", (4, 10))
    with pytest.raises(ValueError):
        q.merged((1, 2, 3))


def test_dict_round_trip():
    p = Position("x", (3, 4))
    assert Position.from_dict(p.to_dict()) == p
    assert Position.from_dict(None) is None and Position.from_dict({}) is None
