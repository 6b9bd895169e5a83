"""Subscription requests (pure): what is accepted, refused, and what changes."""
import pytest

from forwarders.subscriptions import model
from forwarders.subscriptions.model import Caller, Invalid, Rules

RULES = Rules(resource_types=("OS::Nova::Server", "OS::Cinder::Volume"),
              default_rate_limit=10, max_rate_limit=50, min_digest_interval=60)
MEMBER = Caller("u1", "p1", ("member", "reader"))
ADMIN = Caller("a1", "admin-project", ("admin", "member", "reader"), admin_copy=True)


def create(body, caller=MEMBER):
    return model.parse_create(body, caller, RULES, now=1000.0)


def test_a_webhook_is_pending_with_a_secret_and_a_token_in_the_callers_project():
    sub = create({"protocol": "webhook", "endpoint": "https://hooks.example.com/x"})
    assert (sub.state, sub.project_id, sub.role, sub.rate_limit) == (
        "pending_confirmation", "p1", "user", 10)
    assert sub.secrets[0].value.startswith("whsec_") and len(sub.confirmation_token) >= 24
    view = model.public_view(sub)
    assert "secrets" not in view and "confirmation_token" not in view
    assert "email_mode" not in view and view["all_projects"] is False


def test_an_admins_subscription_reads_admin_copies_and_may_span_all_projects():
    sub = create({"protocol": "email", "endpoint": "ops@example.com",
                  "all_projects": True}, ADMIN)
    assert (sub.role, sub.project_id, sub.secrets) == ("admin", None, ())


@pytest.mark.parametrize("body, field", [
    ({"endpoint": "https://x.example"}, "protocol"),
    ({"protocol": "webhook"}, "endpoint"),
    ({"protocol": "webhook", "endpoint": "gopher://x"}, "endpoint"),
    ({"protocol": "webhook", "endpoint": "https://u:p@x.example/"}, "endpoint"),
    ({"protocol": "email", "endpoint": "Bob <bob@example.com>"}, "endpoint"),
    ({"protocol": "email", "endpoint": "a@b.c, d@e.f"}, "endpoint"),
    ({"protocol": "email", "endpoint": "nobody"}, "endpoint"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "resource_types":
      ["OS::Glance::Image"]}, "resource_types"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "event_types": "a.*"},
     "event_types"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "priorities": ["loud"]},
     "priorities"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "rate_limit": 51},
     "rate_limit"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "rate_limit": True},
     "rate_limit"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "email_mode": "digest"},
     "email_mode"),
    ({"protocol": "email", "endpoint": "a@b.example", "digest_interval": 5},
     "digest_interval"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "state": "active"}, "state"),
    ({"protocol": "webhook", "endpoint": "https://x.example", "all_projects": True,
      "project_id": "p2"}, "all_projects"),
    ([], "body"),
])
def test_bad_fields_are_named(body, field):
    with pytest.raises(Invalid) as caught:
        create(body)
    assert caught.value.field == field


def test_a_new_endpoint_must_be_confirmed_again_and_forgets_where_it_started():
    sub = create({"protocol": "webhook", "endpoint": "https://a.example/"}).replace(
        state="active", confirmed_at=1001.0, start_positions={"g": {"index": "i"}})
    same = model.parse_update({"endpoint": "https://a.example/", "name": "n"}, sub, RULES)
    assert (same.state, same.name, same.confirmation_token) == (
        "active", "n", sub.confirmation_token)
    moved = model.parse_update({"endpoint": "https://b.example/"}, sub, RULES)
    assert (moved.state, moved.confirmed_at, moved.start_positions) == (
        "pending_confirmation", None, None)
    assert moved.confirmation_token != sub.confirmation_token


def test_owners_disable_and_enable_again_a_confirmed_one_resumes():
    sub = create({"protocol": "webhook", "endpoint": "https://a.example/"}).replace(
        state="active", confirmed_at=1001.0)
    off = model.parse_update({"state": "disabled"}, sub, RULES)
    assert (off.state, off.state_reason) == ("disabled", "disabled by its owner")
    assert model.parse_update({"state": "active"}, off, RULES).state == "active"
    never = create({"protocol": "webhook", "endpoint": "https://a.example/"}).replace(
        state="disabled")
    assert model.parse_update({"state": "active"}, never, RULES).state == \
        "pending_confirmation"


def test_stored_and_read_back_unchanged():
    sub = create({"protocol": "webhook", "endpoint": "https://a.example/",
                  "resource_types": ["OS::Nova::Server"], "event_types": ["compute.*"],
                  "priorities": ["ERROR"]}).replace(start_positions={})
    assert model.Subscription.from_source(sub.to_source()) == sub
    assert sub.priorities == ("error",)


def test_during_a_rotation_every_unexpired_secret_signs_newest_first():
    sub = create({"protocol": "webhook", "endpoint": "https://a.example/"}).replace(
        secrets=(model.Secret("whsec_new"), model.Secret("whsec_old", expires_at=2000.0),
                 model.Secret("whsec_older", expires_at=1500.0)))
    assert sub.current_secrets(now=1600.0) == ("whsec_new", "whsec_old")
    assert sub.current_secrets(now=2000.0) == ("whsec_new",)


def test_the_webhook_sink_gets_each_current_secret_with_its_expiry():
    sub = create({"protocol": "webhook", "endpoint": "https://a.example/"}).replace(
        secrets=(model.Secret("whsec_new"), model.Secret("whsec_old", expires_at=2000.5),
                 model.Secret("whsec_older", expires_at=1500.0)))
    assert sub.signing_secrets(now=1600.0) == ("whsec_new", "whsec_old@2000.5")
    assert sub.signing_secrets(now=2000.5) == ("whsec_new",)


def test_confirmation_tokens_are_safe_on_a_command_line_and_in_a_url():
    # `openstack subscription confirm ID --token -K3...` took a token starting with
    # "-" for a missing value (a url-safe base64 token did, 1 in 64).
    tokens = {model.new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(len(t) >= 32 and t.isalnum() and t[0] != "-" for t in tokens)
