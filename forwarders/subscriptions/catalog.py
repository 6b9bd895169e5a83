"""Subscriptions as the delivery service delivers them: one pipeline per active
subscription and resource group, each with its own durable cursor.

Every ``refresh_interval`` the service reads the subscriptions (``Catalog.read``)
and asks ``Catalog.pipelines`` for what it should deliver: a pipeline named
``subscription-<id>`` per group the subscription's types touch, made of

* the filters of the view subscriptions serve (``[subscriptions] view``);
* the subscription's selection (types, event types, priorities), its creator's
  role copy as the view's role rule gives it, and its project (or every project,
  made by an admin);
* a webhook, e-mail or syslog sink with ``[subscriptions]``' and ``[smtp]``'s
  settings;
* a hold policy with ``retry_schedule``, given up after ``disable_after`` seconds
  of failure, when the subscription is disabled with the reason (``on_gone``).

A subscription whose settings changed (its document's revision) gets a new
pipeline; its cursor stays. The live process with the smallest id also sends the
confirmation requests of pending subscriptions (``confirmation``).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Mapping

from forwarders.pipeline.pipeline import HOLD, FailurePolicy, Pipeline
from forwarders.pipeline.view import View
from forwarders.sinks.websub.sink import WebSubSink
from forwarders.sinks.base import Sink, SinkContext, SinkGone, SinkUnavailable
from forwarders.sinks.email.sink import EmailSink
from forwarders.sinks.syslog.sink import SyslogSink
from forwarders.sinks.webhook.sink import Failed as WebhookFailed, WebhookSink
from forwarders.subscriptions import confirmation
from forwarders.subscriptions.model import (ACTIVE, DISABLED, EMAIL, FEED, PENDING,
                                            SYSLOG, WEBSUB, Subscription)
from forwarders.subscriptions.store import Stored, SubscriptionStore
from searchlight_forward.logs import describe
from searchlight_forward.model.documents import ADMIN
from searchlight_forward.retry import Policy

LOG = logging.getLogger(__name__)

PREFIX = "subscription-"
#: seconds: subscriptions are read again at least this often, even if the index's
#: counters say nothing changed (ten thousand take a fraction of a second to read)
REREAD = 300.0


def pipeline_name(sub_id: str) -> str:
    return f"{PREFIX}{sub_id}"


@dataclasses.dataclass(frozen=True)
class CatalogSettings:
    public_url: str
    allowed_networks: tuple = ()
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
    disable_after: float = 432000.0
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 4
    confirmation_attempts: int = 5
    confirmation_interval: float = 60.0
    refresh_interval: float = 5.0
    smtp: Mapping[str, str] = dataclasses.field(default_factory=dict)
    syslog_ca_file: str = ""

    @classmethod
    def from_conf(cls, conf) -> "CatalogSettings":
        s, smtp = conf.subscriptions, conf.smtp
        return cls(
            public_url=s.public_url.rstrip("/"),
            allowed_networks=tuple(s.allowed_networks),
            retry_schedule=tuple(s.retry_schedule) or (5.0,),
            disable_after=s.disable_after, webhook_timeout=s.webhook_timeout,
            webhook_concurrency=s.webhook_concurrency,
            confirmation_attempts=s.confirmation_attempts,
            confirmation_interval=s.confirmation_interval,
            refresh_interval=s.refresh_interval, syslog_ca_file=s.syslog_ca_file or "",
            smtp={k: str(v) for k, v in {
                "smtp_host": smtp.host, "smtp_port": smtp.port, "starttls": smtp.starttls,
                "ssl": smtp.ssl, "ca_file": smtp.ca_file, "username": smtp.username,
                "password": smtp.password, "from_address": smtp.from_address,
                "timeout": smtp.timeout}.items() if v is not None})


class Catalog:
    def __init__(self, store: SubscriptionStore, template: View, settings: CatalogSettings,
                 types_by_group: Mapping[str, frozenset[str]]):
        self.store = store
        self.template = template
        self.settings = settings
        self.types_by_group = dict(types_by_group)
        self._confirming: set[str] = set()
        self._sent: set[str] = set()          # tokens whose request was delivered
        self._cache: tuple | None = None      # (signature, when, subscriptions)
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            4, thread_name_prefix="confirmations")

    def read(self) -> list[Stored]:
        """Every subscription; read again only when one was written or deleted since
        (and at least every ``REREAD`` seconds)."""
        signature = self.store.signature()
        if self._cache is not None and signature is not None and \
                signature == self._cache[0] and time.monotonic() - self._cache[1] < REREAD:
            return self._cache[2]
        found = self.store.all()
        self._cache = (signature, time.monotonic(), found)
        return found

    # -- pipelines ---------------------------------------------------------------------

    def groups_of(self, sub: Subscription) -> list[str]:
        wanted = set(sub.resource_types) if sub.resource_types else None
        return sorted(g for g, types in self.types_by_group.items()
                      if wanted is None or wanted & types)

    def sink_for(self, sub: Subscription, name: str | None = None) -> Sink:
        name = name or pipeline_name(sub.id)
        if sub.protocol == EMAIL:
            options = dict(self.settings.smtp, to=sub.endpoint, mode=sub.email_mode,
                           digest_interval=str(sub.digest_interval),
                           rate_limit=str(sub.rate_limit))
            return EmailSink(name, options, SinkContext())
        if sub.protocol == WEBSUB:
            return WebSubSink(name, {
                "url": sub.endpoint, "topic": sub.websub_topic_url,
                "hub": f"{self.settings.public_url}/v1/websub",
                # no hub.secret, no signature (an empty option is refused)
                **({"hub_secret": sub.websub_secret} if sub.websub_secret else {}),
                "title": sub.name or "changes",
                "timeout": str(self.settings.webhook_timeout),
                "concurrency": str(self.settings.webhook_concurrency),
                "rate_limit": str(sub.rate_limit),
                "allowed_networks": ",".join(self.settings.allowed_networks),
                "id_salt": sub.id}, SinkContext())
        if sub.protocol == SYSLOG:
            return SyslogSink(name, {
                "url": sub.endpoint, "check_destination": "true",
                "allowed_networks": ",".join(self.settings.allowed_networks),
                "ca_file": self.settings.syslog_ca_file,
                "timeout": str(self.settings.webhook_timeout),
                "sd_id": "change@32473"}, SinkContext())
        return WebhookSink(name, {
            # Each with its expiry: a rotated secret stops signing then, whenever
            # this sink was built.
            "url": sub.endpoint, "secrets": ",".join(sub.signing_secrets()),
            "timeout": str(self.settings.webhook_timeout),
            "concurrency": str(self.settings.webhook_concurrency),
            "rate_limit": str(sub.rate_limit),
            "allowed_networks": ",".join(self.settings.allowed_networks),
            "id_salt": sub.id}, SinkContext())

    def pipeline_for(self, sub: Subscription) -> Pipeline:
        t = self.template
        return Pipeline(
            name=pipeline_name(sub.id), filters=list(t.filters),
            sink_name=sub.protocol, sink=self.sink_for(sub),
            failure=FailurePolicy(HOLD, Policy(schedule=self.settings.retry_schedule),
                                  give_up_after=self.settings.disable_after),
            resource_types=frozenset(sub.resource_types) if sub.resource_types else None,
            event_types=sub.event_types,
            priorities=frozenset(sub.priorities) if sub.priorities else None,
            start_from=sub.start_from, role=t.copy_for(sub.role == ADMIN),
            project_id=sub.project_id,
            start_positions=(dict(sub.start_positions)
                             if sub.start_positions is not None else None),
            on_gone=lambda reason, sub_id=sub.id: self.disable(sub_id, reason))

    def wanted(self, stored: list[Stored]) -> dict[str, tuple[tuple, Stored, list[str]]]:
        """name -> (revision, stored, groups) of every subscription to deliver."""
        feeds = {s.subscription.id: s.subscription for s in stored
                 if s.subscription.protocol == FEED and s.subscription.state == ACTIVE}
        return {pipeline_name(s.subscription.id): (s.revision, s, self.groups_of(s.subscription))
                for s in stored if s.subscription.state == ACTIVE
                and s.subscription.protocol != FEED      # a feed is read, not sent
                and not (s.subscription.protocol == WEBSUB
                         and self.websub_ended(s.subscription, feeds))}

    @staticmethod
    def websub_ended(sub: Subscription, feeds: Mapping[str, Subscription],
                     now: float | None = None) -> str | None:
        """Why a WebSub subscription delivers no more (its lease expired, its topic's
        feed was revoked), or None."""
        now = time.time() if now is None else now
        if sub.lease_expires_at is not None and sub.lease_expires_at <= now:
            return "lease expired"
        feed = feeds.get(sub.websub_topic)
        if feed is None or feed.feed_token_hash != sub.websub_feed_hash or (
                feed.expires_at is not None and feed.expires_at <= now):
            return "the topic's feed was revoked or expired"
        return None

    def end_websub(self, stored: list[Stored]) -> None:
        """Disable the WebSub subscriptions that ended, with the reason (the leader)."""
        feeds = {s.subscription.id: s.subscription for s in stored
                 if s.subscription.protocol == FEED and s.subscription.state == ACTIVE}
        for s in stored:
            sub = s.subscription
            if sub.protocol == WEBSUB and sub.state == ACTIVE:
                reason = self.websub_ended(sub, feeds)
                if reason:
                    self.disable(sub.id, reason)

    def disable(self, sub_id: str, reason: str) -> None:
        """Disable a subscription (its endpoint is gone or failed for too long)."""
        def change(sub: Subscription):
            if sub.state == DISABLED:
                return None
            return sub.replace(state=DISABLED, state_reason=reason[:500],
                               updated_at=time.time())
        try:
            self.store.change(sub_id, change)
            LOG.warning("subscription %s disabled: %s", sub_id, reason)
        except Exception as exc:  # noqa: BLE001 - the next failure tries again
            LOG.error("subscription %s: could not disable it (%s): %s", sub_id, exc, reason)

    # -- confirmations -----------------------------------------------------------------

    def confirm_pending(self, stored: list[Stored]) -> None:
        """Send the confirmation request of every pending subscription that is due
        (never sent, or the last attempt failed ``confirmation_interval`` ago), in the
        background."""
        now = time.time()
        pending = {s.subscription.confirmation_token for s in stored
                   if s.subscription.state == PENDING}
        with self._lock:
            self._sent &= pending
        for s in stored:
            sub = s.subscription
            if sub.state != PENDING or sub.confirmation_token in self._sent:
                continue     # (a read from before this process recorded its sending)
            if sub.confirmation_sent_at is not None and sub.confirmation_error is None:
                continue                  # delivered; waiting for the owner
            last = sub.confirmation_sent_at or 0.0
            if sub.confirmation_attempts and now - last < self.settings.confirmation_interval:
                continue
            with self._lock:
                if sub.id in self._confirming:
                    continue
                self._confirming.add(sub.id)
            self._executor.submit(self._confirm, sub)

    def _confirm(self, sub: Subscription) -> None:
        try:
            error, permanent = None, False
            sink = self.sink_for(sub, name=f"confirm-{sub.id}")
            try:
                confirmation.send(sink, sub, self.settings.public_url)
            except SinkGone as exc:
                # A permanent refusal (410 Gone, an SMTP 5xx): asking again is no use.
                error, permanent = (str(exc) or "the endpoint is gone")[:500], True
            except (SinkUnavailable, WebhookFailed) as exc:   # say what happened
                error = (str(exc) or "the endpoint did not take it")[:500]
            except Exception as exc:  # noqa: BLE001 - recorded on the subscription
                error = describe(exc)[:500]
            finally:
                sink.close()
            give_up = error is not None and (permanent or sub.confirmation_attempts + 1
                                             >= self.settings.confirmation_attempts)

            def change(current: Subscription):
                if current.state != PENDING or current.endpoint != sub.endpoint:
                    return None
                changed = current.replace(
                    confirmation_sent_at=time.time(),
                    confirmation_attempts=current.confirmation_attempts + 1,
                    confirmation_error=error)
                if give_up:
                    tries = "" if permanent else \
                        f" in {changed.confirmation_attempts} attempts"
                    changed = changed.replace(
                        state=DISABLED, state_reason="the confirmation request could not "
                        f"be delivered{tries}: {error}")
                return changed
            self.store.change(sub.id, change)
            if error is None:
                with self._lock:
                    self._sent.add(sub.confirmation_token)
            if error:
                LOG.warning("subscription %s: confirmation request failed: %s", sub.id,
                            error)
            else:
                LOG.info("subscription %s: confirmation request sent to %s", sub.id,
                         sub.endpoint)
        except Exception:  # noqa: BLE001 - tried again at the next refresh
            LOG.exception("subscription %s: confirmation", sub.id)
        finally:
            with self._lock:
                self._confirming.discard(sub.id)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
