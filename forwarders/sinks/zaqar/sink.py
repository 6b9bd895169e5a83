"""Zaqar sink: post every envelope to a Zaqar queue (python-zaqarclient, API v2).

Options and queue naming: ``config.py`` (and docs/zaqar.md).

``deliver`` groups the batch by (project, queue), keeps the order within each group,
and posts each group in as few requests as Zaqar's limits allow (``batching.py``).
The sink classifies what happened; the pipeline's policy decides what to do:

* returns: every envelope was posted (or skipped by design: no project and no
  ``fallback_project``; counted in ``counters["skipped_no_project"]``);
* ``SinkUnavailable(delivered=n)``: Zaqar cannot take them now (connection refused,
  timeout, 5xx, auth); the first ``n`` envelopes of the batch are done;
* ``SinkRejected``: everything was posted except ``rejected``, envelopes that this
  sink can never deliver (too big for one Zaqar post, queue name invalid, refused by
  Zaqar as malformed). It is raised only when nothing else is pending, so a
  ``SinkUnavailable`` never hides a rejection: its ``delivered`` prefix stops
  before the first rejected envelope, which is rejected again on the retry.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Mapping, Sequence

import requests
from zaqarclient import errors as zaqar_errors
from zaqarclient.transport import errors as transport_errors

from forwarders.sinks.base import (Rejection, Sink, SinkContext, SinkRejected,
                                   SinkUnavailable)
from forwarders.sinks.zaqar.batching import done_prefix, plan_batches, post_body, post_size
from forwarders.sinks.zaqar.client import Client as _Client
from forwarders.sinks.zaqar.client import Transport as _Transport
from forwarders.sinks.zaqar.client import post_encoded
from forwarders.sinks.zaqar.config import (KNOWN_OPTIONS, ZaqarConfig, project_problem,
                                           queue_name_problem, render)
from searchlight_forward.counters import Counters
from searchlight_forward.model.envelope import Envelope

LOG = logging.getLogger(__name__)


class _Unavailable(Exception):
    pass


class ZaqarSink(Sink):
    """Posts envelopes to Zaqar queues; see the module docstring and docs/zaqar.md."""

    default_policy = "hold"

    def __init__(self, name: str, options: Mapping[str, str], context: SinkContext):
        super().__init__(name, options, context)
        unknown = sorted(set(self.options) - KNOWN_OPTIONS)
        if unknown:
            LOG.warning("sink %s: ignoring unknown option(s) %s", name, ", ".join(unknown))
        self.config = ZaqarConfig.from_options(name, self.options,
                                               getattr(context, "zaqar_url", ""))
        # a post is one HTTP request; a deliver() makes a few
        self.call_timeout = self.config.timeout * 3
        self.counters: Counters = Counters()
        self._lock = threading.RLock()
        self._transport: _Transport | None = None
        self._clients: dict[str, _Client] = {}
        self._queues: dict[tuple[str, str], Any] = {}

    @property
    def destination_per_project(self) -> bool:
        """Queues in each resource's own project (``project = {project_id}``) are
        read by its tenants."""
        return self.config.per_project

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._transport is None:
                self._transport = _Transport(self.config.timeout)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.client.close()
            self._transport = None
            self._clients.clear()
            self._queues.clear()

    # -- seams ---------------------------------------------------------------------
    def auth_opts(self, project: str) -> dict:
        """python-zaqarclient ``auth_opts`` for one Zaqar project.

        No auth (the local default) sends only X-Project-ID; with ``auth_token`` the
        keystone backend just adds X-Auth-Token (no Keystone call: the endpoint is
        known). A subclass can return a keystoneauth session-based setup here.
        """
        if self.config.auth_token:
            return {"backend": "keystone",
                    "options": {"os_auth_token": self.config.auth_token, "os_project_id": project}}
        return {"backend": "noauth", "options": {"project_id": project}}

    def route(self, envelope: Envelope) -> tuple[str, str] | None:
        """(project, queue) for an envelope; None to skip it; ValueError to reject it."""
        override = None
        if self.config.per_project and envelope.project_id is None:
            if self.config.fallback_project is None:
                return None
            override = self.config.fallback_project
        project = render(self.config.project_template, envelope, override)
        queue = render(self.config.queue_template, envelope, override)
        problem = project_problem(project) or queue_name_problem(queue)
        if problem:
            raise ValueError(problem)
        return project, queue

    # -- delivery ------------------------------------------------------------------
    def deliver(self, envelopes: Sequence[Envelope]) -> None:
        envelopes = list(envelopes)
        if not envelopes:
            return
        with self._lock:
            if self._transport is None:
                self.start()
            self._deliver(envelopes)

    def _deliver(self, envelopes: list[Envelope]) -> None:
        done = [False] * len(envelopes)
        rejected: dict[int, str] = {}
        # (project, queue) -> [(batch index, serialized message, size)], in batch order
        groups: dict[tuple[str, str], list[tuple[int, bytes, int]]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                route = self.route(envelope)
            except (ValueError, TypeError, KeyError) as exc:
                rejected[index] = f"cannot name its Zaqar queue: {exc}"
                continue
            if route is None:
                done[index] = True
                self.counters.add("skipped_no_project")
                continue
            try:
                message, size = self._encode(envelope)
            except ValueError as exc:
                rejected[index] = str(exc)
                continue
            groups.setdefault(route, []).append((index, message, size))

        try:
            for (project, queue), items in groups.items():
                batches, too_big = plan_batches([size for _, _, size in items],
                                                self.config.max_bytes, self.config.max_messages)
                for position in too_big:
                    index, _, size = items[position]
                    rejected[index] = (
                        f"too big for Zaqar: one message of {size} bytes makes a "
                        f"{post_size([size])}-byte post, more than max_post_bytes = "
                        f"{self.config.max_bytes}")
                for batch in batches:
                    self._post(project, queue, [items[p] for p in batch], done, rejected)
        except _Unavailable as exc:
            first_rejected = min(rejected, default=len(envelopes))
            delivered = min(done_prefix(done), first_rejected)
            raise SinkUnavailable(f"zaqar sink {self.name}: {exc}",
                                  delivered=delivered) from exc.__cause__

        if rejected:
            self.counters.add("rejected", len(rejected))
            rejections = [Rejection(i, envelopes[i], rejected[i]) for i in sorted(rejected)]
            for r in rejections:
                LOG.warning("sink %s: rejected %s %s version %s: %s", self.name,
                            r.envelope.resource_type, r.envelope.id, r.envelope.version,
                            r.reason)
            raise SinkRejected(rejections, delivered=len(envelopes))

    def _encode(self, envelope: Envelope) -> tuple[bytes, int]:
        """The Zaqar message for an envelope, serialized, and its size."""
        message = {"ttl": self.config.ttl, "body": envelope.to_dict()}
        try:
            # default=str: a value JSON cannot carry (datetime, set...), as
            # Envelope.to_json does; NaN and Infinity are refused (Zaqar would refuse
            # the whole post), never silently changed.
            data = json.dumps(message, allow_nan=False, default=str, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        return data, len(data)

    def _queue(self, project: str, queue: str):
        key = (project, queue)
        found = self._queues.get(key)
        if found is None:
            # Zaqar creates a queue on its first post; no request is made here.
            found = self._queues[key] = self._client(project).queue(queue,
                                                                    auto_create=False)
        return found

    def _client(self, project: str):
        client = self._clients.get(project)
        if client is None:
            client = _Client(self.config.url, {"auth_opts": self.auth_opts(project),
                                               "client_uuid": self.config.client_id},
                             self._transport)
            self._clients[project] = client
        return client

    def probe(self) -> bool:
        """Does Zaqar answer ``GET /v2/ping``? (No project is needed: any client.)"""
        with self._lock:
            if self._transport is None:
                self.start()
            client = next(iter(self._clients.values()), None) or self._client("ping")
        return client.ping()

    def _post(self, project, queue, items, done, rejected) -> None:
        """Post items (in order); on a 400/413 split to find what Zaqar refuses."""
        where = f"queue {queue!r} of project {project!r} at {self.config.url}"
        try:
            result = post_encoded(self._queue(project, queue),
                                  post_body([message for _, message, _ in items]))
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"cannot post to {where}: {type(exc).__name__}: {exc}") \
                from exc
        except transport_errors.TransportError as exc:
            code = getattr(exc, "code", None)
            if code not in (400, 413):
                raise _Unavailable(f"{where} answered {code}: {exc}") from exc
            if "TTL" in str(exc):
                raise _Unavailable(f"{where} refuses ttl = {self.config.ttl}: {exc}") from exc
            if len(items) > 1:
                # Zaqar validates a whole post before storing any of it: nothing of
                # this batch is stored. Halve it to isolate what it refuses (a queue
                # with a smaller _max_messages_post_size halves down to what fits).
                self.counters.add("split_posts")
                middle = len(items) // 2
                self._post(project, queue, items[:middle], done, rejected)
                self._post(project, queue, items[middle:], done, rejected)
                return
            rejected[items[0][0]] = f"Zaqar refused it ({code}): {exc}"
            return
        except zaqar_errors.ZaqarError as exc:
            raise _Unavailable(f"cannot post to {where}: {exc}") from exc
        resources = result.get("resources") if isinstance(result, dict) else None
        if not isinstance(resources, list) or len(resources) != len(items):
            raise _Unavailable(f"{where} gave an unexpected answer to a post of "
                               f"{len(items)} messages: {str(result)[:200]}")
        for index, _, _ in items:
            done[index] = True
        self.counters.add("posts")
        self.counters.add("posted", len(items))
