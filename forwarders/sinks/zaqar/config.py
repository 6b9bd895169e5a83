"""The Zaqar sink's options, checked at start-up, and its queue naming (pure).

Options (``[sink:<name>]``; see docs/zaqar.md)::

    url              Zaqar endpoint            default: [forwarding] zaqar_url
    queue            queue name template       default: openstack-resources
    project          Zaqar project template    default: {project_id}
    fallback_project project for envelopes without project_id when a template
                     uses {project_id}         default: none (they are skipped)
    ttl              message TTL, seconds      default: 3600 (60 .. 1209600)
    max_messages_per_post                      default: 100 (1 .. 1000)
    max_post_bytes   request body limit        default: 262144 (Zaqar's default)
    timeout          HTTP connect/read, s      default: 5
    client_id        Client-ID UUID            default: uuid5 of the sink name
    auth_token       Keystone token            default: none (no-auth Zaqar)

Templates are ``str.format`` templates over the envelope's fields (``resource_type``,
``id``, ``project_id``, ``version``, ``operation``, ``event_type``, ``priority``,
``timestamp``) plus ``resource_type_slug`` (``OS::Nova::Server`` ->
``os-nova-server``). ``priority`` is the more severe of the change's and its alert's
(``searchlight_forward.model.priority``), so ``openstack-{priority}`` puts a server's
create error and the update that followed it in the error queue.
"""
from __future__ import annotations

import dataclasses
import re
import string
import urllib.parse
import uuid

from forwarders.options import Float, Integer, SectionOptions
from forwarders.sinks.base import SinkConfigError
from searchlight_forward.model.envelope import Envelope

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
                   "operation", "event_type", "priority", "timestamp")
KNOWN_OPTIONS = frozenset({
    "url", "queue", "project", "fallback_project", "ttl", "max_messages_per_post",
    "max_post_bytes", "timeout", "client_id", "auth_token",
    # read by the pipeline loader, not by the sink
    "on_failure", "attempts", "backoff", "max_backoff"})

# A typical envelope, to check at start-up that the templates render valid names.
_SAMPLE = Envelope(resource_type="OS::Nova::Server", id=str(uuid.UUID(int=1)),
                   project_id="0123456789abcdef0123456789abcdef",
                   version=1772452807000000270, operation="index",
                   event_type="instance.update", timestamp="2026-03-02 12:00:07.270156",
                   document={}, priority="error")
_CLIENT_ID_NAMESPACE = uuid.UUID("5f1c3a52-6f0e-4b59-9d0c-2d3f1a6b7e41")


def slug(resource_type: str) -> str:
    """``OS::Nova::Server`` -> ``os-nova-server``."""
    return re.sub(r"[^a-z0-9]+", "-", str(resource_type).lower()).strip("-")


def template_fields(template: str, option: str) -> set[str]:
    """The envelope fields a template uses; SinkConfigError if it is not usable."""
    fields = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SinkConfigError(option, f"{template!r} is not a str.format template: "
                                      f"{exc}") from None
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            what = "a positional field" if field == "" or field.isdigit() else \
                f"unknown field {{{field}}}"
            raise SinkConfigError(option, f"{template!r} uses {what}; the fields are "
                                  + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS))
        fields.add(field)
    return fields


def render(template: str, envelope: Envelope, project_id: str | None = None) -> str:
    """Render a template for an envelope (``project_id`` overrides the envelope's)."""
    values = {f: getattr(envelope, f) for f in TEMPLATE_FIELDS if f != "resource_type_slug"}
    values["resource_type_slug"] = slug(envelope.resource_type)
    values["priority"] = envelope.routing_priority
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


@dataclasses.dataclass(frozen=True)
class ZaqarConfig:
    url: str
    queue_template: str
    project_template: str
    per_project: bool
    fallback_project: str | None
    ttl: int
    max_messages: int
    max_bytes: int
    timeout: float
    client_id: str
    auth_token: str | None

    @classmethod
    def from_options(cls, name: str, options: SectionOptions,
                     default_url: str = "") -> "ZaqarConfig":
        url = options.text("url") or (default_url or "").strip()
        if not url:
            raise SinkConfigError("url", "no Zaqar endpoint: set url = http://host:8888 "
                                         "here or [forwarding] zaqar_url")
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SinkConfigError("url", f"{url!r} is not an http(s)://host[:port] URL")
        try:
            parsed.port
        except ValueError:
            raise SinkConfigError("url", f"{url!r} has an invalid port") from None

        queue = options.get("queue", "openstack-resources").strip()
        project = options.get("project", "{project_id}").strip()
        if not queue:
            raise SinkConfigError("queue", "empty; expected a queue name or a template "
                                           "such as tenant-{project_id}")
        if not project:
            raise SinkConfigError("project", "empty; expected a Zaqar project or a "
                                             "template such as {project_id}")
        per_project = "project_id" in (template_fields(queue, "queue")
                                       | template_fields(project, "project"))
        fallback = options.get("fallback_project", "").strip() or None
        if fallback is not None:
            if not per_project:
                raise SinkConfigError("fallback_project", "has no effect, neither queue "
                                      "nor project uses {project_id}; remove it")
            problem = project_problem(fallback)
            if problem:
                raise SinkConfigError("fallback_project", problem)
        _check_templates(queue, project, fallback)

        raw_client_id = options.get("client_id", "").strip()
        if raw_client_id:
            try:
                client_id = str(uuid.UUID(raw_client_id))
            except ValueError:
                raise SinkConfigError("client_id", f"{raw_client_id!r} is not a UUID "
                                      "(Zaqar requires a UUID Client-ID)") from None
        else:
            client_id = str(uuid.uuid5(_CLIENT_ID_NAMESPACE, f"searchlight-forward:{name}"))
        return cls(
            url=url, queue_template=queue, project_template=project,
            per_project=per_project, fallback_project=fallback,
            ttl=options.typed("ttl", Integer(min=MIN_TTL, max=MAX_TTL), 3600),
            max_messages=options.typed("max_messages_per_post",
                                       Integer(min=1, max=MAX_MESSAGES_PER_POST), 100),
            max_bytes=options.typed("max_post_bytes", Integer(min=1024), MAX_POST_BYTES),
            timeout=options.typed("timeout", Float(min=0.1, max=3600.0), 5.0),
            client_id=client_id,
            auth_token=options.get("auth_token", "").strip() or None)


def _check_templates(queue: str, project: str, fallback: str | None) -> None:
    """The templates must render valid names for a typical envelope (this catches
    {resource_type}, {event_type}, {timestamp} or names that are too long)."""
    for option, template, check in (("queue", queue, queue_name_problem),
                                     ("project", project, project_problem)):
        for project_id in [None] + ([fallback] if fallback else []):
            try:
                rendered = render(template, _SAMPLE, project_id)
            except (ValueError, TypeError, KeyError) as exc:
                raise SinkConfigError(option, f"{template!r} cannot be rendered: "
                                              f"{exc}") from None
            problem = check(rendered)
            if problem:
                hint = (" (use {resource_type_slug} rather than {resource_type})"
                        if "resource_type" in template_fields(template, option) else "")
                raise SinkConfigError(option, f"{template!r} renders an invalid name "
                                              f"for a typical envelope: {problem}{hint}")
