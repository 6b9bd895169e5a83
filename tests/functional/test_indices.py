"""A group's index across releases and while its shards start: fields a new release
maps are added to the live index when a listener starts (a changed mapping is left
alone, with a warning); the change log has no end until every shard has started."""
from __future__ import annotations

import logging

import pytest

from searchlight_forward.changelog.reader import ChangeLog
from searchlight_forward.indexer import indices, layout
from searchlight_forward.model.documents import WRITTEN_AT_FIELD
from searchlight_forward.retry import TransientError
from tests.functional.conftest import index_with_unstarted_shard
from tests.functional.websocket_support import PLUGINS


def _mapped(es, index):
    return es.indices.get_mapping(index=index)[index]["mappings"]["properties"]


def _create_like_an_old_release(es, group, without: str, change: dict | None = None):
    body = layout.index_body(PLUGINS.plugins, 1, 0)
    del body["mappings"]["properties"][without]
    body["mappings"]["properties"].update(change or {})
    name = layout.new_index_name(group)
    es.indices.create(index=name, aliases=layout.aliases(group), **body)
    return name


def test_ensure_maps_the_fields_a_new_release_added(es, names):
    name = _create_like_an_old_release(es, names["group"], without=WRITTEN_AT_FIELD)
    assert WRITTEN_AT_FIELD not in _mapped(es, name)

    assert indices.ensure(es, names["group"], PLUGINS.plugins) == name
    assert _mapped(es, name)[WRITTEN_AT_FIELD] == {"type": "long"}


def test_a_changed_mapping_is_left_alone_and_the_warning_says_rebuild(es, names, caplog):
    name = _create_like_an_old_release(es, names["group"], without=WRITTEN_AT_FIELD,
                                       change={"sf_version": {"type": "keyword"}})
    with caplog.at_level(logging.WARNING, logger="searchlight_forward.indexer.indices"):
        assert indices.ensure(es, names["group"], PLUGINS.plugins) == name
    assert "searchlight-forward-manage rebuild" in caplog.text
    assert _mapped(es, name)["sf_version"] == {"type": "keyword"}


def test_the_head_of_an_index_whose_shards_have_not_started_is_not_a_position(es, names):
    # Two of three shards may start on this one node; the third stays unassigned,
    # like a shard of an index being created or recovered. A position of fewer
    # shards must never reach a cursor.
    with index_with_unstarted_shard(es, names["group"], 3):
        with pytest.raises(TransientError, match="shard 2 .* has not started"):
            ChangeLog(es, names["group"]).head()
