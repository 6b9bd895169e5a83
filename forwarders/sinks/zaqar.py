"""Zaqar sink: post every envelope to a Zaqar queue (python-zaqarclient, API v2).

Options (ini section ``[sink:<name>]``, all strings; see docs/zaqar.md)::

    url              Zaqar endpoint            default: the listener's zaqar_url
    queue            queue name template       default: openstack-resources
    project          Zaqar project template    default: {project_id}
    fallback_project project for envelopes without project_id when a template
                     uses {project_id}         default: none (they are skipped)
    ttl              message TTL, seconds      default: 3600 (60 .. 1209600)
    max_messages_per_post                      default: 100 (1 .. 1000)
    max_post_bytes   request body limit        default: 262144 (Zaqar's default)
    timeout          HTTP connect/read, s      default: 10
    client_id        Client-ID UUID            default: uuid5 of the sink name
    auth_token       Keystone token            default: none (no-auth Zaqar)

Templates are ``str.format`` templates over the envelope's fields (``resource_type``,
``id``, ``project_id``, ``version``, ``operation``, ``event_type``, ``timestamp``) plus
``resource_type_slug`` (``OS::Nova::Server`` -> ``os-nova-server``).

``deliver`` groups the batch by (project, queue), keeps the order within each group,
and posts each group in as few requests as Zaqar's limits allow. Outcomes:

* returns: every envelope was posted (or skipped by design: no project and no
  ``fallback_project``; counted in ``counters["skipped_no_project"]``);
* ``SinkUnavailable(delivered=n)``: Zaqar cannot take them now (connection refused,
  timeout, 5xx, auth); the first ``n`` envelopes of the batch are done, retry the rest;
* ``forwarders.sinks.SinkRejected``: everything was posted except ``rejected``,
  envelopes that this sink can never deliver (too big for one Zaqar post, queue
  name invalid, refused by Zaqar as malformed). The pipeline dead-letters them with
  their reason and must not retry them. It is raised only when nothing else is
  pending, so a ``SinkUnavailable`` never hides a rejection: its ``delivered`` prefix
  stops before the first rejected envelope, which is rejected again (and reported)
  on the retry.
"""
from __future__ import annotations

import collections
import json
import logging
import re
import string
import threading
import urllib.parse
import uuid
from typing import Any, Iterable, Mapping, Sequence

import requests
from zaqarclient import errors as zaqar_errors
from zaqarclient.transport import errors as transport_errors

from forwarders.envelope import Envelope
from searchlight_forward.zaqar_client import Client as _Client
from searchlight_forward.zaqar_client import Transport as _Transport
from forwarders.sinks import (Rejection, Sink, SinkConfigError, SinkContext, SinkRejected,
                              SinkUnavailable)

LOG = logging.getLogger(__name__)

#: Zaqar's own bounds (zaqar.transport.validation, [transport] defaults).
MIN_TTL = 60
MAX_TTL = 1209600
MAX_POST_BYTES = 262144
#: python-zaqarclient breaks above ~1,770 messages per post: Zaqar answers with a
#: Location header listing every message id, http.client refuses a header line over
#: 64 KiB and the client raises ConnectionError *after* Zaqar stored the messages.
MAX_MESSAGES_PER_POST = 1000
#: what python-zaqarclient accepts (Zaqar itself also allows '.')
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
QUEUE_NAME_MAX = 64
PROJECT_MAX = 256
PROJECT_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: an HTTP header

TEMPLATE_FIELDS = ("resource_type", "resource_type_slug", "id", "project_id", "version",
                   "operation", "event_type", "timestamp")
KNOWN_OPTIONS = frozenset({
    "url", "queue", "project", "fallback_project", "ttl", "max_messages_per_post",
    "max_post_bytes", "timeout", "client_id", "auth_token",
    # read by the pipeline loader, not by the sink
    "on_failure", "attempts", "backoff", "max_backoff"})

DEFAULTS = {"queue": "openstack-resources", "project": "{project_id}", "ttl": "3600",
            "max_messages_per_post": "100", "max_post_bytes": str(MAX_POST_BYTES),
            "timeout": "10"}

#: the JSON text around the messages of a post body, as python-zaqarclient writes it
#: (``json.dumps({"messages": [m1, m2]})`` = '{"messages": [' m1 ', ' m2 ']}')
BODY_OVERHEAD = len(json.dumps({"messages": []}))
SEPARATOR = len(", ")

# A typical envelope, to check at start-up that the templates render valid names.
_SAMPLE = Envelope(resource_type="OS::Nova::Server", id=str(uuid.UUID(int=1)),
                   project_id="0123456789abcdef0123456789abcdef",
                   version=1772452807000000270, operation="index",
                   event_type="instance.update", timestamp="2026-03-02 12:00:07.270156",
                   document={})
_CLIENT_ID_NAMESPACE = uuid.UUID("5f1c3a52-6f0e-4b59-9d0c-2d3f1a6b7e41")


# ---------------------------------------------------------------------------------
# Pure helpers (no I/O): templates, names, batching.

def slug(resource_type: str) -> str:
    """``OS::Nova::Server`` -> ``os-nova-server``."""
    return re.sub(r"[^a-z0-9]+", "-", str(resource_type).lower()).strip("-")


def template_fields(template: str, option: str) -> set[str]:
    """The envelope fields a template uses; SinkConfigError if it is not usable."""
    fields = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SinkConfigError(f"{option}: {template!r} is not a str.format template: "
                              f"{exc}") from None
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            what = "a positional field" if field == "" or field.isdigit() else \
                f"unknown field {{{field}}}"
            raise SinkConfigError(
                f"{option}: {template!r} uses {what}; the fields are "
                + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS))
        fields.add(field)
    return fields


def render(template: str, envelope: Envelope, project_id: str | None = None) -> str:
    """Render a template for an envelope (``project_id`` overrides the envelope's)."""
    values = {f: getattr(envelope, f) for f in TEMPLATE_FIELDS if f != "resource_type_slug"}
    values["resource_type_slug"] = slug(envelope.resource_type)
    if project_id is not None:
        values["project_id"] = project_id
    return template.format(**values)


def queue_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Zaqar queue name, or None."""
    if not name:
        return "the queue name is empty"
    if len(name) > QUEUE_NAME_MAX:
        return (f"queue name {name[:80]!r} is {len(name)} characters, "
                f"Zaqar allows {QUEUE_NAME_MAX}")
    if not QUEUE_NAME_RE.match(name):
        return (f"queue name {name[:80]!r} has characters Zaqar does not allow "
                f"(only ASCII letters, digits, '-' and '_')")
    return None


def project_problem(project: str) -> str | None:
    """Why ``project`` is not usable as a Zaqar project (X-Project-ID), or None."""
    if not project:
        return "the Zaqar project is empty"
    if len(project) > PROJECT_MAX:
        return (f"Zaqar project {project[:80]!r}... is {len(project)} characters "
                f"(max {PROJECT_MAX})")
    if not PROJECT_RE.match(project):
        return f"Zaqar project {project[:80]!r} is not printable ASCII without spaces"
    return None


def post_size(item_sizes: Iterable[int]) -> int:
    """Bytes of the body python-zaqarclient sends for messages of these sizes."""
    sizes = list(item_sizes)
    return BODY_OVERHEAD + sum(sizes) + SEPARATOR * max(len(sizes) - 1, 0)


def plan_batches(item_sizes: Sequence[int], max_bytes: int, max_count: int
                 ) -> tuple[list[list[int]], list[int]]:
    """Split messages (by serialized size, in order) into posts within the limits.

    Returns ``(batches, too_big)``: batches are lists of indices, in order, each with
    at most ``max_count`` messages and a body of at most ``max_bytes``; ``too_big`` are
    the indices of messages that exceed ``max_bytes`` even alone (never postable).
    Greedy, so the order of the messages is kept across batches.
    """
    if max_count < 1 or max_bytes < 1:
        raise ValueError("max_count and max_bytes must be positive")
    batches: list[list[int]] = []
    too_big: list[int] = []
    current: list[int] = []
    current_bytes = BODY_OVERHEAD
    for index, size in enumerate(item_sizes):
        if BODY_OVERHEAD + size > max_bytes:
            too_big.append(index)
            continue
        added = size + (SEPARATOR if current else 0)
        if current and (len(current) >= max_count or current_bytes + added > max_bytes):
            batches.append(current)
            current, current_bytes = [], BODY_OVERHEAD
            added = size
        current.append(index)
        current_bytes += added
    if current:
        batches.append(current)
    return batches, too_big


def done_prefix(done: Sequence[bool]) -> int:
    """How many leading entries are True."""
    for index, flag in enumerate(done):
        if not flag:
            return index
    return len(done)


# ---------------------------------------------------------------------------------
# python-zaqarclient plumbing.

class _Unavailable(Exception):
    pass


def _number(options, option, kind, low, high, expected):
    raw = str(options.get(option, DEFAULTS.get(option, ""))).strip()
    try:
        value = kind(raw)
    except ValueError:
        raise SinkConfigError(f"{option}: {raw!r} is not {expected}") from None
    if value != value or not (low <= value <= (high if high is not None else value)):
        raise SinkConfigError(f"{option}: {raw!r} is out of range; expected {expected}")
    return value


class ZaqarSink(Sink):
    """Posts envelopes to Zaqar queues; see the module docstring and docs/zaqar.md."""

    default_policy = "hold"

    def __init__(self, name: str, options: Mapping[str, str], context: SinkContext):
        super().__init__(name, options, context)
        unknown = sorted(set(options) - KNOWN_OPTIONS)
        if unknown:
            LOG.warning("sink %s: ignoring unknown option(s) %s", name, ", ".join(unknown))

        self.url = (options.get("url") or getattr(context, "zaqar_url", "") or "").strip()
        if not self.url:
            raise SinkConfigError("url: no Zaqar endpoint: set url = http://host:8888 "
                                  "here or zaqar_url in the listener's configuration")
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SinkConfigError(f"url: {self.url!r} is not an http(s)://host[:port] URL")
        try:
            parsed.port
        except ValueError:
            raise SinkConfigError(f"url: {self.url!r} has an invalid port") from None

        self.queue_template = options.get("queue", DEFAULTS["queue"]).strip()
        self.project_template = options.get("project", DEFAULTS["project"]).strip()
        if not self.queue_template:
            raise SinkConfigError("queue: empty; expected a queue name or a template "
                                  "such as tenant-{project_id}")
        if not self.project_template:
            raise SinkConfigError("project: empty; expected a Zaqar project or a "
                                  "template such as {project_id}")
        queue_fields = template_fields(self.queue_template, "queue")
        project_fields = template_fields(self.project_template, "project")
        self.per_project = "project_id" in queue_fields | project_fields

        fallback = options.get("fallback_project", "").strip()
        self.fallback_project = fallback or None
        if self.fallback_project is not None:
            if not self.per_project:
                raise SinkConfigError(
                    "fallback_project: has no effect, neither queue nor project uses "
                    "{project_id}; remove it")
            problem = project_problem(self.fallback_project)
            if problem:
                raise SinkConfigError(f"fallback_project: {problem}")

        # The templates must render valid names for a typical envelope (this catches
        # {resource_type}, {event_type}, {timestamp} or names that are too long).
        for option, template, check in (("queue", self.queue_template, queue_name_problem),
                                         ("project", self.project_template, project_problem)):
            samples = [None] + ([self.fallback_project] if self.fallback_project else [])
            for project_id in samples:
                try:
                    rendered = render(template, _SAMPLE, project_id)
                except (ValueError, TypeError, KeyError) as exc:
                    raise SinkConfigError(f"{option}: {template!r} cannot be rendered: "
                                          f"{exc}") from None
                problem = check(rendered)
                if problem:
                    hint = (" (use {resource_type_slug} rather than {resource_type})"
                            if "resource_type" in template_fields(template, option) else "")
                    raise SinkConfigError(f"{option}: {template!r} renders an invalid "
                                          f"name for a typical envelope: {problem}{hint}")

        self.ttl = _number(options, "ttl", int, MIN_TTL, MAX_TTL,
                           f"an integer number of seconds from {MIN_TTL} to {MAX_TTL}")
        self.max_messages = _number(options, "max_messages_per_post", int, 1,
                                    MAX_MESSAGES_PER_POST,
                                    f"an integer from 1 to {MAX_MESSAGES_PER_POST}")
        self.max_bytes = _number(options, "max_post_bytes", int, 1024, None,
                                 "an integer number of bytes >= 1024 (Zaqar's default "
                                 f"limit is {MAX_POST_BYTES})")
        self.timeout = _number(options, "timeout", float, 0.1, 3600.0,
                               "a number of seconds from 0.1 to 3600")

        raw_client_id = options.get("client_id", "").strip()
        if raw_client_id:
            try:
                self.client_id = str(uuid.UUID(raw_client_id))
            except ValueError:
                raise SinkConfigError(f"client_id: {raw_client_id!r} is not a UUID "
                                      "(Zaqar requires a UUID Client-ID)") from None
        else:
            self.client_id = str(uuid.uuid5(_CLIENT_ID_NAMESPACE,
                                            f"searchlight-forward:{name}"))
        self.auth_token = options.get("auth_token", "").strip() or None

        self.counters: collections.Counter = collections.Counter()
        self._lock = threading.RLock()
        self._transport: _Transport | None = None
        self._clients: dict[str, _Client] = {}
        self._queues: dict[tuple[str, str], Any] = {}

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._transport is None:
                self._transport = _Transport(self.timeout)

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
        if self.auth_token:
            return {"backend": "keystone",
                    "options": {"os_auth_token": self.auth_token, "os_project_id": project}}
        return {"backend": "noauth", "options": {"project_id": project}}

    def route(self, envelope: Envelope) -> tuple[str, str] | None:
        """(project, queue) for an envelope; None to skip it; ValueError to reject it."""
        override = None
        if self.per_project and envelope.project_id is None:
            if self.fallback_project is None:
                return None
            override = self.fallback_project
        project = render(self.project_template, envelope, override)
        queue = render(self.queue_template, envelope, override)
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
        # (project, queue) -> [(batch index, message, serialized size)], in batch order
        groups: dict[tuple[str, str], list[tuple[int, dict, int]]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                route = self.route(envelope)
            except (ValueError, TypeError, KeyError) as exc:
                rejected[index] = f"cannot name its Zaqar queue: {exc}"
                continue
            if route is None:
                done[index] = True
                self.counters["skipped_no_project"] += 1
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
                                                self.max_bytes, self.max_messages)
                for position in too_big:
                    index, _, size = items[position]
                    rejected[index] = (
                        f"too big for Zaqar: one message of {size} bytes makes a "
                        f"{post_size([size])}-byte post, more than max_post_bytes = "
                        f"{self.max_bytes}")
                for batch in batches:
                    self._post(project, queue, [items[p] for p in batch], done, rejected)
        except _Unavailable as exc:
            first_rejected = min(rejected, default=len(envelopes))
            delivered = min(done_prefix(done), first_rejected)
            raise SinkUnavailable(f"zaqar sink {self.name}: {exc}",
                                  delivered=delivered) from exc.__cause__

        if rejected:
            self.counters["rejected"] += len(rejected)
            rejections = [Rejection(i, envelopes[i], rejected[i]) for i in sorted(rejected)]
            for r in rejections:
                LOG.warning("sink %s: rejected %s %s version %s: %s", self.name,
                            r.envelope.resource_type, r.envelope.id, r.envelope.version,
                            r.reason)
            raise SinkRejected(rejections, delivered=len(envelopes))

    def _encode(self, envelope: Envelope) -> tuple[dict, int]:
        """The Zaqar message for an envelope and its size as the client serializes it."""
        message = {"ttl": self.ttl, "body": envelope.to_dict()}
        try:
            text = json.dumps(message, allow_nan=False)
        except TypeError:
            # a value JSON cannot carry (datetime, set...): as Envelope.to_json does
            message = {"ttl": self.ttl, "body": json.loads(envelope.to_json())}
            try:
                text = json.dumps(message, allow_nan=False)
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        except ValueError as exc:  # NaN / Infinity: Zaqar would refuse the whole post
            raise ValueError(f"not valid JSON: {exc}") from None
        return message, len(text)

    def _queue(self, project: str, queue: str):
        key = (project, queue)
        found = self._queues.get(key)
        if found is None:
            client = self._clients.get(project)
            if client is None:
                client = _Client(self.url, {"auth_opts": self.auth_opts(project),
                                            "client_uuid": self.client_id},
                                 self._transport)
                self._clients[project] = client
            # Zaqar creates a queue on its first post; no request is made here.
            found = self._queues[key] = client.queue(queue, auto_create=False)
        return found

    def _post(self, project, queue, items, done, rejected) -> None:
        """Post items (in order); on a 400/413 split to find what Zaqar refuses."""
        where = f"queue {queue!r} of project {project!r} at {self.url}"
        try:
            result = self._queue(project, queue).post([message for _, message, _ in items])
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"cannot post to {where}: {type(exc).__name__}: {exc}") \
                from exc
        except transport_errors.TransportError as exc:
            code = getattr(exc, "code", None)
            if code not in (400, 413):
                raise _Unavailable(f"{where} answered {code}: {exc}") from exc
            if "TTL" in str(exc):
                raise _Unavailable(f"{where} refuses ttl = {self.ttl}: {exc}") from exc
            if len(items) > 1:
                # Zaqar validates a whole post before storing any of it: nothing of
                # this batch is stored. Halve it to isolate what it refuses (a queue
                # with a smaller _max_messages_post_size halves down to what fits).
                self.counters["split_posts"] += 1
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
        self.counters["posts"] += 1
        self.counters["posted"] += len(items)
