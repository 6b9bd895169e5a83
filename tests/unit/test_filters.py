"""Field filters, on plain data, with properties over random documents."""
import copy
import re

import pytest
from hypothesis import given, settings, strategies as st

from forwarders.filters.base import FilterConfigError, FilterContext
from forwarders.filters.fields import AdminOnlyFields, RegexFields, UnsearchableFields
from tests.conftest import field_paths

T = "OS::Nova::Server"
CONTEXT = FilterContext(admin_only={T: ("OS-EXT-SRV-ATTR:*", "host")},
                        unsearchable={T: ("user_data", "metadata")})

keys = st.sampled_from(["name", "password", "OS-EXT-SRV-ATTR:host", "host", "status",
                        "adminPass", "metadata", "user_data", "secret_key", "id", "ip"])
documents = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(keys, children, max_size=4)),
    max_leaves=20).filter(lambda d: isinstance(d, dict))


@settings(max_examples=300, deadline=None)
@given(documents)
def test_regex_fields_leaves_no_matching_path_anywhere(document):
    f = RegexFields("secrets", {"patterns": r"(?i)password, (?i)secret, ^OS-EXT-SRV-ATTR:"},
                    CONTEXT)
    before = copy.deepcopy(document)
    out = f.apply(T, document)
    assert document == before                       # the input is not touched
    for path in field_paths(out):
        assert not any(re.search(p, path) for p in (r"(?i)password", r"(?i)secret",
                                                    r"^OS-EXT-SRV-ATTR:"))
    # nothing else is removed: every surviving top-level key is a key of the input
    assert set(out) <= set(document)
    assert {k for k in document if not re.search(r"(?i)password|(?i:secret)|^OS-EXT-SRV-ATTR:", k)} == set(out)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_admin_only_and_unsearchable_drop_exactly_their_fields(document):
    admin = AdminOnlyFields("admin_only", {"fields": "secret_*"}, CONTEXT).apply(T, document)
    assert not {"OS-EXT-SRV-ATTR:host", "host", "secret_key"} & set(admin)
    assert set(admin) == set(document) - {"OS-EXT-SRV-ATTR:host", "host", "secret_key"}
    unsearchable = UnsearchableFields("u", {}, CONTEXT).apply(T, document)
    assert set(unsearchable) == set(document) - {"user_data", "metadata"}


def test_regex_paths_go_through_lists_of_objects():
    f = RegexFields("r", {"patterns": r"^rules\.remote_ip_prefix$"}, CONTEXT)
    doc = {"rules": [{"id": 1, "remote_ip_prefix": "10.0.0.0/8"}, {"id": 2}],
           "remote_ip_prefix": "kept: not under rules"}
    assert f.apply(T, doc) == {"rules": [{"id": 1}, {"id": 2}],
                               "remote_ip_prefix": "kept: not under rules"}


def test_regex_patterns_one_per_line_may_contain_commas():
    f = RegexFields("r", {"patterns": "\n^a{1,2}$\n^b$"}, CONTEXT)
    assert f.apply(T, {"a": 1, "aa": 2, "b": 3, "c": 4}) == {"c": 4}


@pytest.mark.parametrize("patterns, message", [
    ("", "at least one"), ("(unclosed", "not a valid regular expression")])
def test_bad_patterns_are_refused_with_the_option_named(patterns, message):
    with pytest.raises(FilterConfigError, match=f"patterns: .*{message}"):
        RegexFields("r", {"patterns": patterns}, CONTEXT)
