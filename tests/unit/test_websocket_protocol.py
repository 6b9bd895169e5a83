"""The WebSocket protocol core with plain data: frames in, actions out."""
from __future__ import annotations

import datetime
import fnmatch
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarders.filters.base import Filter, FilterContext
from forwarders.websocket import auth, protocol
from forwarders.websocket.auth import Identity, InvalidToken, TokenFileValidator
from forwarders.pipeline.render import Renderer
from searchlight_forward.tokenbucket import TokenBucket
from forwarders.websocket.protocol import (Close, Resume, Send, Session, State,
                                           Validate)
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from searchlight_forward.model import documents
from searchlight_forward.model.documents import ResourceState

SERVER, PORT = "OS::Nova::Server", "OS::Neutron::Port"
ADMIN_ONLY = {SERVER: ("OS-EXT-SRV-ATTR:*",), PORT: ("binding:*",)}
TYPES = (SERVER, PORT)
UTC = datetime.timezone.utc
INDEX = "sft-20260302120000000000"


def identity(project="p1", roles=("member",), user="u1", expires_at=None):
    return Identity(user, project, frozenset(roles), expires_at)


def copies(rid, project, version, rtype=SERVER, deleted=False, extra=None,
           event="instance.update"):
    doc = {"id": rid, "resource_type": rtype, "project_id": project, "name": f"vm-{rid}",
           "OS-EXT-SRV-ATTR:host": "compute-1", "binding:host_id": "compute-1"}
    doc.update(extra or {})
    state = ResourceState(rtype, rid, project, version, doc, deleted=deleted,
                          base_version=version, event_type=event,
                          changed_at="2026-03-02 12:00:00.000001")
    return documents.es_sources(state, ADMIN_ONLY[rtype])


def change(source, seq, index=INDEX, resync=False):
    """The entry a one-shard change log holds at ``seq``, as the reader makes it."""
    entry = Entry(index, 0, seq, source, resync=resync)
    entry.after = Position(index, (seq,))
    return entry


def at(seq, index=INDEX):
    return Position(index, (seq,))


def session(types=TYPES, filters=(), admin_only=ADMIN_ONLY, **kw):
    return Session(types, Renderer(filters, admin_only), **kw)


def sent(actions):
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def subscribed(ident=None, all_projects=False, types=TYPES, cursor=None, **kw):
    s = session(**kw)
    assert isinstance(s.receive(json.dumps({"action": "authenticate", "token": "t"}))[0],
                      Validate)
    [ok] = sent(s.token_accepted(ident or identity()))
    assert ok["type"] == "authenticated"
    actions = s.receive(json.dumps({"action": "subscribe", "resource_types": list(types),
                                    "all_projects": all_projects, "cursor": cursor}))
    assert [type(a) for a in actions] == [Resume], actions
    return s, actions[0].subscription


def envelope(text):
    return json.loads(text)["envelope"]


# -- authentication and subscription -------------------------------------------------

def test_authenticate_then_subscribe():
    s, sub = subscribed()
    assert s.state is State.RESUMING
    assert sub.role == "user" and sub.project_id == "p1" and not sub.all_projects
    assert sub.resource_types == frozenset(TYPES)


def test_admin_gets_the_admin_copy_and_may_ask_all_projects():
    s, sub = subscribed(identity(roles=("admin",)), all_projects=True)
    assert sub.role == "admin" and sub.project_id is None and sub.all_projects


def test_custom_admin_role():
    s = session(admin_role="cloud-admin")
    s.receive('{"action": "authenticate", "token": "t"}')
    s.token_accepted(identity(roles=("admin",)))
    [err] = sent(s.receive('{"action": "subscribe", "resource_types": ["OS::Nova::Server"],'
                           ' "all_projects": true}'))
    assert err["code"] == "forbidden"


def test_non_admin_asking_all_projects_is_refused():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    s.token_accepted(identity())
    [err] = sent(s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                                       "all_projects": True})))
    assert err["type"] == "error" and err["code"] == "forbidden"
    assert s.state is State.AUTHENTICATED     # may try again


def test_token_without_project_sees_nothing_unless_admin_all_projects():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    s.token_accepted(identity(project=None))
    [err] = sent(s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER]})))
    assert err["code"] == "forbidden"


def test_subscribe_before_authenticate_is_an_error():
    s = session()
    [err] = sent(s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER]})))
    assert err["code"] == "not_authenticated" and err["action"] == "subscribe"
    assert s.state is State.AWAITING_TOKEN


def test_frames_sent_while_validating_are_handled_after():
    s = session()
    [v] = s.receive('{"action": "authenticate", "token": "secret"}')
    assert v == Validate("secret") and "secret" not in repr(v)
    assert s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER]})) == []
    actions = s.token_accepted(identity())
    assert [type(a) for a in actions] == [Send, Resume]


def test_bad_token_closes_4001_with_reason():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    [c] = s.token_rejected("unknown token")
    assert c == Close(4001, "authentication failed: unknown token")
    assert s.state is State.CLOSED
    assert s.receive('{"action": "authenticate", "token": "t"}') == []


def test_expired_identity_is_rejected():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    past = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    [c] = s.token_accepted(identity(expires_at=past))
    assert c.code == protocol.AUTH_FAILED and "expired" in c.reason


def test_auth_deadline_only_before_authentication():
    s = session()
    [c] = s.auth_deadline()
    assert c.code == 4001 and "timeout" in c.reason
    s2, _ = subscribed()
    assert s2.auth_deadline() == []


@pytest.mark.parametrize("frame,code", [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('"authenticate"', "bad_frame"),
    ("{}", "bad_frame"),
    ('{"action": 3}', "bad_frame"),
    ('{"action": "dance"}', "unknown_action"),
    ('{"action": "authenticate"}', "bad_request"),
    ('{"action": "authenticate", "token": 42}', "bad_request"),
    ('{"action": "authenticate", "token": ""}', "bad_request"),
    (b'{"action": "authenticate", "token": "t"}', "binary_frame"),
])
def test_garbage_gets_an_error_frame(frame, code):
    s = session()
    [err] = sent(s.receive(frame))
    assert err["type"] == "error" and err["code"] == code


@pytest.mark.parametrize("body,code", [
    ({}, "bad_request"),
    ({"resource_types": []}, "bad_request"),
    ({"resource_types": "OS::Nova::Server"}, "bad_request"),
    ({"resource_types": [1]}, "bad_request"),
    ({"resource_types": ["OS::Nova::Nope"]}, "unknown_resource_type"),
    ({"resource_types": [SERVER], "all_projects": "yes"}, "bad_request"),
    ({"resource_types": [SERVER], "cursor": 12}, "bad_cursor"),
    ({"resource_types": [SERVER], "cursor": "no-seq"}, "bad_cursor"),
    ({"resource_types": [SERVER], "cursor": "a:b:c"}, "bad_cursor"),
])
def test_bad_subscriptions(body, code):
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    s.token_accepted(identity())
    [err] = sent(s.receive(json.dumps({"action": "subscribe", **body})))
    assert err["code"] == code, err
    assert s.state is State.AUTHENTICATED


def test_one_subscription_per_connection():
    s, _ = subscribed()
    [err] = sent(s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER]})))
    assert err["code"] == "already_subscribed"
    # A second authenticate is a token renewal, not a second identity.
    assert s.receive('{"action": "authenticate", "token": "t2"}') == [Validate("t2")]


# -- token lifetime on an open connection ---------------------------------------------

SOON = datetime.datetime(2100, 1, 1, tzinfo=UTC)
LATER = datetime.datetime(2100, 1, 2, tzinfo=UTC)


def renew(s, token="fresh"):
    assert s.receive(json.dumps({"action": "authenticate", "token": token})) == \
        [Validate(token)]


def test_renewal_keeps_subscription_cursor_and_versions():
    s, sub = subscribed(identity(expires_at=SOON))
    [_] = s.resumed(at(5), 0, False)
    user_copy = copies("r1", "p1", 10)["user"]
    assert s.offer(change(user_copy, 6)) is not None
    renew(s)
    [ok] = sent(s.token_accepted(identity(expires_at=LATER)))
    assert ok["type"] == "reauthenticated" and ok["expires_at"].startswith("2100-01-02")
    assert s.state is State.LIVE and s.subscription is sub and s.identity.expires_at == LATER
    assert s.offer(change(user_copy, 7)) is None             # version already sent
    assert s.position == at(7)
    assert s.offer(change(copies("r1", "p1", 11)["user"], 8)) is not None


@pytest.mark.parametrize("new", [identity(project="p2"), identity(user="u2"),
                                 identity(roles=("admin",))])
def test_renewal_for_another_identity_is_refused_and_the_old_token_stays(new):
    s, sub = subscribed(identity(expires_at=SOON))
    renew(s)
    [err] = sent(s.token_accepted(new))
    assert err["code"] == "identity_mismatch"
    assert s.identity.expires_at == SOON and s.subscription is sub
    assert s.state is State.RESUMING


def test_renewal_refused_or_unavailable_keeps_the_connection():
    s, _ = subscribed(identity(expires_at=SOON))
    renew(s)
    [err] = sent(s.token_rejected("token unknown"))
    assert err["code"] == "bad_token" and s.state is State.RESUMING
    renew(s)
    [err] = sent(s.receive('{"action": "authenticate", "token": "third"}'))
    assert err["code"] == "renewal_in_progress"
    [err] = sent(s.validation_unavailable())
    assert err["code"] == "try_again_later" and s.state is State.RESUMING


def test_expiry_warning_then_close_4005_unless_renewed():
    now = datetime.datetime(2099, 12, 31, 23, 59, tzinfo=UTC)
    s, _ = subscribed(identity(expires_at=SOON))
    [warn] = sent(s.token_expiring())
    assert warn["type"] == "token_expiring" and warn["expires_at"].startswith("2100-01-01")
    assert s.token_expired(now) == []                      # fired early: not yet
    [c] = s.token_expired(SOON)
    assert c.code == protocol.TOKEN_EXPIRED and s.state is State.CLOSED
    s2, _ = subscribed(identity(expires_at=SOON))
    renew(s2)
    s2.token_accepted(identity(expires_at=LATER))
    assert s2.token_expired(SOON) == []                    # the old timer is moot


def test_an_invalid_token_at_its_expiry_is_left_to_the_expiry_timer():
    s, _ = subscribed(identity(expires_at=SOON))
    assert s.token_revoked("unknown", now=SOON - datetime.timedelta(seconds=0.5)) == []
    [c] = s.token_expired(SOON)
    assert c.code == protocol.TOKEN_EXPIRED


def test_a_users_connection_over_the_limit_closes_4029():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    [c] = s.too_many_connections(50)
    assert c.code == protocol.RATE_LIMITED and "at most 50 per user" in c.reason
    assert s.state is State.CLOSED and s.token_accepted(identity()) == []


def test_revoked_token_closes_4006():
    s, _ = subscribed()
    [c] = s.token_revoked("token unknown, expired or revoked")
    assert c.code == protocol.TOKEN_REVOKED and "revoked" in c.reason
    assert s.token_revoked("again") == []


def test_subscribing_to_another_project_is_forbidden():
    s = session()
    s.receive('{"action": "authenticate", "token": "t"}')
    s.token_accepted(identity(project="p1", roles=("admin",)))
    [err] = sent(s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                                       "project_id": "p2"})))
    assert err["code"] == "forbidden" and s.subscription is None
    [a] = s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                                "project_id": "p1"}))
    assert isinstance(a, Resume) and a.subscription.project_id == "p1"


def test_frame_flood_closes_4029_without_parsing():
    s = session(frame_rate=TokenBucket(rate=2.0, burst=3))
    for i in range(3):
        assert sent(s.receive("garbage", now=100.0))[0]["code"] == "bad_json"
    [c] = s.receive("garbage", now=100.0)
    assert c.code == protocol.RATE_LIMITED and s.state is State.CLOSED
    s2 = session(frame_rate=TokenBucket(rate=2.0, burst=3), max_errors=1000)
    for i in range(50):                                    # 2/s sustained is fine
        [a] = s2.receive("garbage", now=100.0 + i * 0.5)
        assert isinstance(a, Send)


def test_too_many_bad_frames_close_4002():
    s = session(max_errors=3)
    for _ in range(3):
        [a] = s.receive("garbage")
        assert isinstance(a, Send)
    [c] = s.receive("garbage")
    assert c.code == protocol.PROTOCOL_VIOLATION
    assert s.receive("garbage") == []


def test_close_reasons_fit_in_a_close_frame():
    c = protocol.close(4001, "é" * 200)
    assert len(c.reason.encode()) <= 123


# -- what a connection sees ------------------------------------------------------------

def test_user_sees_own_project_user_copy_only():
    s, _ = subscribed(identity(project="p1"))
    mine, theirs = copies("a", "p1", 10), copies("b", "p2", 10)
    assert s.offer(change(mine["admin"], 1)) is None
    assert s.offer(change(theirs["user"], 2)) is None
    text = s.offer(change(mine["user"], 3))
    frame = json.loads(text)
    assert frame["type"] == "change" and frame["cursor"] == f"{INDEX}:3"
    env = frame["envelope"]
    assert env["id"] == "a" and env["project_id"] == "p1" and env["version"] == 10
    assert env["operation"] == "index" and env["event_type"] == "instance.update"
    assert "OS-EXT-SRV-ATTR:host" not in env["document"]
    assert not any(k.startswith("sf_") for k in env["document"])


def test_admin_sees_admin_copy_of_own_project_unless_all_projects():
    s, _ = subscribed(identity(project="p1", roles=("admin",)))
    assert s.offer(change(copies("a", "p1", 10)["user"], 1)) is None
    env = envelope(s.offer(change(copies("a", "p1", 10)["admin"], 2)))
    assert env["document"]["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert s.offer(change(copies("b", "p2", 10)["admin"], 3)) is None
    s2, _ = subscribed(identity(project="p1", roles=("admin",)), all_projects=True)
    assert s2.offer(change(copies("b", "p2", 10)["admin"], 3)) is not None


def test_only_subscribed_types():
    s, _ = subscribed(types=[PORT])
    assert s.offer(change(copies("a", "p1", 10)["user"], 1)) is None
    assert s.offer(change(copies("p", "p1", 10, rtype=PORT)["user"], 2)) is not None


def test_no_older_version_after_newer_and_no_duplicates():
    s, _ = subscribed()
    assert s.offer(change(copies("a", "p1", 20)["user"], 5)) is not None
    assert s.offer(change(copies("a", "p1", 20)["user"], 6)) is None    # same version
    assert s.offer(change(copies("a", "p1", 10)["user"], 7)) is None    # older
    assert s.offer(change(copies("a", "p1", 30)["user"], 4)) is None    # behind position
    assert envelope(s.offer(change(copies("a", "p1", 30)["user"], 8)))["version"] == 30


def test_delete_envelope_has_no_document():
    s, _ = subscribed()
    s.offer(change(copies("a", "p1", 10)["user"], 1))
    env = envelope(s.offer(change(copies("a", "p1", 20, deleted=True,
                                         event="instance.delete.end")["user"], 2)))
    assert env["operation"] == "delete" and env["document"] is None
    assert env["event_type"] == "instance.delete.end"


def test_resync_skips_tombstones_of_resources_never_sent():
    s, _ = subscribed()
    gone = copies("a", "p1", 20, deleted=True)["user"]
    assert s.offer(change(gone, 1, resync=True)) is None
    assert s.offer(change(gone, 2)) is not None       # live: say it


def test_a_new_index_resets_the_position_but_not_the_versions():
    s, _ = subscribed()
    s.offer(change(copies("a", "p1", 20)["user"], 50))
    assert s.offer(change(copies("a", "p1", 20)["user"], 3, index="sft-new")) is None
    assert s.offer(change(copies("b", "p1", 20)["user"], 4, index="sft-new")) is not None


def test_cursor_ahead_of_the_server():
    s, _ = subscribed()
    s.start_at(at(100))
    assert s.offer(change(copies("a", "p1", 20)["user"], 99)) is None
    [resumed] = sent(s.resumed(at(90), 0, False))
    assert resumed == {"type": "resumed", "cursor": f"{INDEX}:100", "count": 0,
                       "full": False}
    assert s.state is State.LIVE


def test_filters_apply_and_a_failing_filter_withholds_the_change():
    class DropName(Filter):
        def apply(self, resource_type, document):
            return {k: v for k, v in document.items() if k != "name"}

    class Broken(Filter):
        def apply(self, resource_type, document):
            raise RuntimeError("bug")

    ctx = FilterContext(ADMIN_ONLY, TYPES)
    s, _ = subscribed(filters=[DropName("n", {}, ctx)])
    assert "name" not in envelope(s.offer(change(copies("a", "p1", 1)["user"], 1)))["document"]
    s2, _ = subscribed(filters=[Broken("b", {}, ctx)])
    assert s2.offer(change(copies("a", "p1", 1)["user"], 1)) is None
    assert s2.offer(change(copies("b", "p1", 1, deleted=True)["user"], 2)) is not None


def test_user_copy_written_before_a_pattern_was_added_is_redacted_again():
    s, _ = subscribed(admin_only={SERVER: ("OS-EXT-SRV-ATTR:*", "secret*")})
    user = copies("a", "p1", 1, extra={"secret_sauce": 1})["user"]
    assert "secret_sauce" in user
    assert "secret_sauce" not in envelope(s.offer(change(user, 1)))["document"]


def test_item_tombstones_are_never_sent():
    s, _ = subscribed(identity(roles=("admin",)), all_projects=True)
    removal = {"sf_role": "removal", "sf_deleted": True, "resource_type": SERVER,
               "removed": ["x", "y", "z"]}
    assert s.offer(change(removal, 1)) is None


def test_nothing_is_offered_before_subscribing_or_after_close():
    s = session()
    assert s.offer(change(copies("a", "p1", 1)["user"], 1)) is None
    s2, _ = subscribed()
    s2.overflow(1000)
    assert s2.state is State.CLOSED
    assert s2.offer(change(copies("a", "p1", 1)["user"], 1)) is None


# -- properties ----------------------------------------------------------------------

PROJECTS = st.sampled_from(["p1", "p1", "p2", None])   # mostly the identity's own
ROLE_SETS = st.frozensets(st.sampled_from(["admin", "member", "reader"]), max_size=3)
FIELD_NAMES = st.sampled_from(["name", "status", "OS-EXT-SRV-ATTR:host",
                               "OS-EXT-SRV-ATTR:instance_name", "binding:profile",
                               "binding:host_id", "tags", "secretish"])
RESOURCES = st.lists(st.tuples(
    st.sampled_from(["r1", "r2", "r3", "r4", "r5"]), st.sampled_from(TYPES),
    st.sampled_from(["p1", "p1", "p2", "p3", None]),
    st.integers(1, 50), st.booleans(),
    st.dictionaries(FIELD_NAMES, st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    st.booleans()), min_size=4, max_size=40)


def _is_admin_only(resource_type, field):
    return any(fnmatch.fnmatchcase(field, p) for p in ADMIN_ONLY[resource_type])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(project=PROJECTS, roles=ROLE_SETS, all_projects=st.booleans(),
       types=st.sets(st.sampled_from(TYPES), min_size=1), resources=RESOURCES,
       order=st.randoms(use_true_random=False), resync=st.booleans())
def test_property_nothing_leaks_and_versions_only_go_up(project, roles, all_projects, types,
                                                         resources, order, resync):
    ident = identity(project=project, roles=roles)
    s = session()
    s.receive(json.dumps({"action": "authenticate", "token": "t"}))
    s.token_accepted(ident)
    actions = s.receive(json.dumps({"action": "subscribe", "resource_types": sorted(types),
                                    "all_projects": all_projects}))
    admin = "admin" in roles
    if not isinstance(actions[0], Resume):
        assert (all_projects and not admin) or (not all_projects and project is None)
        return
    stored = []
    for rid, rtype, proj, version, deleted, extra, leak_into_user in resources:
        both = copies(rid, proj, version, rtype=rtype, deleted=deleted, extra=extra)
        if leak_into_user:
            # a user copy stored before today's admin-only patterns existed
            both["user"] = dict(both["user"], **{k: v for k, v in extra.items()})
        stored.extend(both.values())
    order.shuffle(stored)
    last_version: dict = {}
    for seq, source in enumerate(stored):
        text = s.offer(change(source, seq, resync=resync))
        if text is None:
            continue
        env = envelope(text)
        assert env["resource_type"] in types
        if not admin:
            assert env["project_id"] == project is not None
            for field in env["document"] or {}:
                assert not _is_admin_only(env["resource_type"], field), field
        elif not all_projects:
            assert env["project_id"] == project is not None
        assert not any(k.startswith("sf_") for k in env["document"] or {})
        key = (env["resource_type"], env["id"])
        assert env["version"] > last_version.get(key, 0)
        last_version[key] = env["version"]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["action", "token", "resource_types", "all_projects", "cursor",
                         "x"]), children, max_size=5),
    max_leaves=12)
FRAMES = st.one_of(
    st.text(max_size=200), st.binary(max_size=100),
    JSONISH.map(json.dumps),
    st.fixed_dictionaries({"action": st.sampled_from(["authenticate", "subscribe", "nope"])},
                          optional={"token": JSONISH, "resource_types": JSONISH,
                                    "all_projects": JSONISH, "cursor": JSONISH}).map(json.dumps),
    st.just("[" * 5000 + "]" * 5000))


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(FRAMES, max_size=15), accept_at=st.integers(0, 15),
       roles=ROLE_SETS)
def test_property_garbage_frames_never_raise(frames, accept_at, roles):
    s = session(max_errors=5)
    for i, data in enumerate(frames):
        if i == accept_at and s.state is State.VALIDATING:
            actions = s.token_accepted(identity(roles=roles))
        else:
            actions = s.receive(data)
        for action in actions:
            assert isinstance(action, (Send, Close, Validate, Resume))
            if isinstance(action, Send):
                assert json.loads(action.text)["type"] in ("error", "authenticated")
            if isinstance(action, Close):
                assert action.code in (4001, 4002) and len(action.reason.encode()) <= 123


# -- authentication seam ---------------------------------------------------------------

def test_token_file_validator(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({
        "tok-a": {"user_id": "alice", "project_id": "p1", "roles": ["member"]},
        "tok-admin": {"user_id": "root", "project_id": "p0", "roles": ["admin"],
                      "expires_at": "2099-01-01T00:00:00Z"},
        "tok-old": {"user_id": "bob", "project_id": "p1", "roles": [],
                    "expires_at": "2000-01-01T00:00:00Z"}}))
    v = auth.load_validator("token_file", {"token_file": str(path)})
    assert isinstance(v, TokenFileValidator)
    a = v.validate("tok-a")
    assert a == Identity("alice", "p1", frozenset({"member"}), None) and not a.is_admin()
    admin = v.validate("tok-admin")
    assert admin.is_admin() and admin.expires_at.year == 2099
    for token, reason in (("nope", "unknown token"), ("tok-old", "token expired"),
                          ("", "empty token")):
        with pytest.raises(InvalidToken, match=reason) as exc:
            v.validate(token)
        assert token not in str(exc.value) or not token


def test_token_file_reload_keeps_old_tokens_on_a_bad_edit(tmp_path):
    import os
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"t1": {"project_id": "p1", "roles": []}}))
    v = TokenFileValidator(str(path))
    path.write_text(json.dumps({"t2": {"project_id": "p2", "roles": []}}))
    os.utime(path, (1, 1))
    assert v.validate("t2").project_id == "p2"
    with pytest.raises(InvalidToken):
        v.validate("t1")
    path.write_text("{broken")
    os.utime(path, (2, 2))
    assert v.validate("t2").project_id == "p2"


@pytest.mark.parametrize("content,message", [
    ("[]", "JSON object"), ("nope", "not JSON"),
    ('{"t": {"roles": "admin"}}', "roles"), ('{"t": 1}', "object"),
    ('{"t": {"expires_at": "tomorrow"}}', "ISO 8601"),
    ('{"t": {"project_id": 5}}', "project_id")])
def test_token_file_errors_name_the_entry_not_the_token(tmp_path, content, message):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(auth.AuthConfigError, match=message) as exc:
        TokenFileValidator(str(path))
    assert '"t"' not in str(exc.value)


def test_unknown_validator_and_registry():
    with pytest.raises(auth.AuthConfigError, match="unknown token validator"):
        auth.load_validator("kerberos", {})

    class Fixed(auth.TokenValidator):
        def validate(self, token):
            return identity()
    auth.register("fixed-test", lambda options: Fixed())
    assert auth.load_validator("fixed-test", {}).validate("x").project_id == "p1"
    assert "fixed-test" in auth.available() and "token_file" in auth.available()


# -- the view's role rule --------------------------------------------------------------

def test_a_view_with_role_user_serves_admins_the_user_copy():
    """[view:...] role = user: an admin's connection reads the user copy (no admin-only
    field), and may still ask for every project; role = caller: the admin copy."""
    admin = identity(roles=("admin",))
    _, caller_rule = subscribed(admin, all_projects=True)
    assert caller_rule.role == "admin"
    s = Session(TYPES, Renderer((), ADMIN_ONLY, admin_copies=False))
    s.receive(json.dumps({"action": "authenticate", "token": "t"}))
    s.token_accepted(admin)
    [resume] = s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                                     "all_projects": True}))
    assert resume.subscription.role == "user" and resume.subscription.all_projects


# -- live search: a resource moved to another project -------------------------------

def searching(project="p1", holders=None, all_projects=False, roles=("member",)):
    """A live session (query: name starts with vm-) holding a and b of its project."""
    from forwarders.livesearch.query import Vocabularies
    from searchlight_forward.changelog.snapshot import Snapshot
    mapping = {"id": {"type": "keyword"}, "name": {"type": "keyword"},
               "project_id": {"type": "keyword"}}
    s = Session(TYPES, Renderer((), ADMIN_ONLY), holders=holders,
                vocabularies=Vocabularies({SERVER: mapping, PORT: mapping}, ADMIN_ONLY))
    s.receive(json.dumps({"action": "authenticate", "token": "t"}))
    s.token_accepted(identity(project=project, roles=roles))
    [resume] = s.receive(json.dumps({"action": "subscribe", "resource_types": [SERVER],
                                     "query": {"prefix": {"name": "vm-"}},
                                     "all_projects": all_projects}))
    assert isinstance(resume, Resume)
    role = "admin" if "admin" in roles else "user"
    page = [change(copies(r, project, 10)[role], i + 1) for i, r in enumerate("ab")]
    [results] = sent(s.results(Snapshot(at(2), page, {(SERVER, "a"), (SERVER, "b")}, 2),
                               full=True))
    assert results["type"] == "results" and results["total"] == 2
    s.resumed(at(2), 0, True)
    return s


def test_a_resource_moved_out_of_the_project_leaves_without_its_new_state():
    holders = protocol.Holders()
    s = searching(holders=holders)
    assert set(holders.get((SERVER, "a"))) == {s}
    moved = change(copies("a", "p2", 11, extra={"name": "vm-secret-name"})["user"], 3)
    assert s.concerns(moved)
    text = s.offer(moved)
    frame = json.loads(text)
    assert frame == {"type": "left", "cursor": f"{INDEX}:3", "resource_type": SERVER,
                     "id": "a", "version": 11, "reason": "no_longer_matches"}
    assert "secret" not in text and "p2" not in text
    assert holders.get((SERVER, "a")) == () and s.members == {(SERVER, "b")}
    # Then it is another project's like any other: nothing more about it.
    later = change(copies("a", "p2", 12)["user"], 4)
    assert not s.concerns(later) and s.offer(later) is None
    # Back in the project: it enters again.
    assert json.loads(s.offer(change(copies("a", "p1", 13)["user"], 5)))["type"] == \
        "entered"
    assert set(holders.get((SERVER, "a"))) == {s}


def test_another_projects_change_to_a_resource_not_held_is_not_offered():
    s = searching(holders=protocol.Holders())
    other = change(copies("c", "p2", 10)["user"], 3)
    admin_copy = change(copies("a", "p2", 11)["admin"], 4)
    assert not s.concerns(other) and s.offer(other) is None
    assert not s.concerns(admin_copy) and s.offer(admin_copy) is None


def test_holders_are_released_when_the_connection_closes():
    holders = protocol.Holders()
    s = searching(holders=holders)
    assert len(holders) == 2
    s.closed()
    assert len(holders) == 0


def test_an_all_projects_search_sees_a_move_as_an_update():
    holders = protocol.Holders()
    s = searching(project="p1", holders=holders, all_projects=True, roles=("admin",))
    assert len(holders) == 0          # it sees every project already
    frame = json.loads(s.offer(change(copies("a", "p2", 11)["admin"], 3)))
    assert frame["type"] == "updated" and frame["envelope"]["project_id"] == "p2"
