import argparse
import datetime
import itertools
import json

import pytest

from devtools.generate import build_parser, parse_project_ids, waves


def test_project_ids_parse_and_refuse_garbage():
    assert parse_project_ids("demo=abc, admin=def") == {"demo": "abc", "admin": "def"}
    with pytest.raises(argparse.ArgumentTypeError):
        parse_project_ids("demo")


def test_each_wave_is_newer_than_the_last_and_uses_pinned_projects():
    args = build_parser().parse_args(["--per-type", "3", "--seed", "3",
                                      "--project-ids", "demo=d1,admin=a1"])
    notes = list(itertools.islice(waves(args), 1500))
    stamps = [datetime.datetime.fromisoformat(n.timestamp) for n in notes]
    # timestamps never go back across waves (within a wave they are sorted too)
    assert stamps == sorted(stamps)
    text = json.dumps([n.payload for n in notes])
    assert '"d1"' in text and '"a1"' in text
