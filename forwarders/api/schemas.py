"""JSON Schemas of the API's request bodies, checked with jsonschema before anything
else reads them.

A schema says the shape: an object, its known fields, each field's JSON type and
size. What depends on the deployment's catalog or on other fields stays in
``forwarders.subscriptions.model`` (known resource types and priorities, an
endpoint's syntax for its protocol, e-mail-only fields, feeds' expiry) and in
``forwarders.sinks.destinations`` (where an endpoint resolves to). A body that does not
match is answered 400 naming one field (``body`` for the body itself) with the
``message`` of that field's schema: the same words as the model's checks.
"""
from __future__ import annotations

from typing import Any

import jsonschema

from forwarders.subscriptions import model

Validator = jsonschema.Draft202012Validator


def _string(limit: int) -> dict:
    return {"type": ["string", "null"], "maxLength": limit,
            "message": f"must be a string of at most {limit} characters"}


def _choice(choices, nullable: bool = True) -> dict:
    return {"enum": list(choices) + ([None] if nullable else []),
            "message": f"must be one of {', '.join(choices)}"}


_PATTERNS = {"type": ["array", "null"], "maxItems": model.MAX_PATTERNS,
             "items": {"type": "string", "minLength": 1, "maxLength": 255},
             "message": f"must be a list of at most {model.MAX_PATTERNS} non-empty "
                        "strings"}
_BOOLEAN = {"type": "boolean", "message": "must be true or false"}


def _fields(rules: model.Rules) -> dict:
    """Every field a subscription body may have (create or update)."""
    return {
        "protocol": _choice(model.PROTOCOLS, nullable=False),
        "name": _string(model.MAX_NAME),
        "endpoint": _string(model.MAX_ENDPOINT),
        "project_id": _string(64),
        "all_projects": _BOOLEAN,
        "start_from": _choice((model.NOW, model.BEGINNING)),
        "state": _choice((model.ACTIVE, model.DISABLED)),
        "resource_types": _PATTERNS,
        "event_types": _PATTERNS,
        "priorities": _PATTERNS,
        "rate_limit": {"type": "number", "exclusiveMinimum": 0,
                       "maximum": rules.max_rate_limit,
                       "message": "deliveries per second, more than 0 and at most "
                                  f"{rules.max_rate_limit:g}"},
        "email_mode": _choice(model.EMAIL_MODES),
        "digest_interval": {"type": "integer", "minimum": rules.min_digest_interval,
                            "maximum": rules.max_digest_interval,
                            "message": f"seconds, from {rules.min_digest_interval} to "
                                       f"{rules.max_digest_interval}"},
        "expires_in": {"type": ["integer", "null"], "minimum": 60,
                       "maximum": model.MAX_FEED_TTL,
                       "message": f"seconds, from 60 to {model.MAX_FEED_TTL}"},
    }


def _object(properties: dict, required=(), closed: bool = True) -> dict:
    return {"type": "object", "message": "must be a JSON object",
            "properties": properties, "required": list(required),
            "additionalProperties": not closed}


class Schemas:
    """The request bodies' schemas for one deployment's rules."""

    def __init__(self, rules: model.Rules):
        fields = _fields(rules)
        self.create = Validator(_object(
            {k: v for k, v in fields.items() if k in model.CREATABLE}, ("protocol",)))
        self.update = Validator(_object(
            {k: v for k, v in fields.items() if k in model.UPDATABLE}))
        self.rotate = Validator(_object({"expire_previous_in": {
            "type": "number", "minimum": 0, "maximum": 7 * 86400,
            "message": "seconds, from 0 to 604800"}}, closed=False))
        # The query itself is the live-search parser's (its errors name their path).
        self.search = Validator(_object({"all_projects": _BOOLEAN}, closed=False))
        for validator in (self.create, self.update, self.rotate, self.search):
            Validator.check_schema(validator.schema)


class Mismatch(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check(validator: jsonschema.protocols.Validator, body: Any) -> None:
    """``Mismatch`` naming one field (the same one whatever the order of the
    body's keys: the body itself, then an unknown field, then a missing one, then the
    first field in the schema's order) if ``body`` does not match."""
    errors = list(validator.iter_errors(body))
    if not errors:
        return
    schema = validator.schema
    if not isinstance(body, dict):
        raise Mismatch("body", schema["message"])
    known = schema["properties"]
    unknown = sorted(set(body) - set(known)) if not schema["additionalProperties"] else []
    if unknown:
        raise Mismatch(unknown[0], f"unknown field; known: {', '.join(sorted(known))}")
    missing = [name for name in schema["required"] if name not in body]
    if missing:
        raise Mismatch(missing[0], known[missing[0]]["message"])
    order = list(known)
    named = [e for e in errors if e.path and e.path[0] in known]
    first = min(named, key=lambda e: order.index(e.path[0]))
    raise Mismatch(first.path[0], known[first.path[0]]["message"])
