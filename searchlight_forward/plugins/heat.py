"""Heat stacks (exchange ``heat``, topic ``notifications``).

Heat sends ``orchestration.stack.<action>.<start|end|error>`` with
heat/engine/api.py format_notification_body: the stack's identity, name, state
("CREATE_IN_PROGRESS"), reason, ``create_at`` (sic), ``updated_at``, tags and
description. ``.start`` events are indexed too, so progress shows without polling.

``updated_at`` is set when an update starts and does not move as the stack goes
from IN_PROGRESS to COMPLETE, and a new stack's is null, so the stack's own
timestamps cannot order its states: versions come from the emission time. Heat's
timestamps are stamped to the second (``2015-11-19T22:45:21Z``).
"""
from __future__ import annotations

from searchlight_forward.model.change import DocumentChange, Notification
from searchlight_forward.plugins import _common as c
from searchlight_forward.plugins.base import PayloadError

HEAT_TARGETS = (("heat", "notifications"),)
_PHASE_STATUS = {"start": "IN_PROGRESS", "end": "COMPLETE", "error": "FAILED"}
_STATUSES = ("IN_PROGRESS", "COMPLETE", "FAILED")


def stack_id_of(identity: str) -> str:
    """Older Heat sends an ARN (arn:openstack:heat::<tenant>:stacks/<name>/<id>)."""
    if identity.startswith("arn:"):
        return identity.rstrip("/").rsplit("/", 1)[-1]
    return identity


class StackPlugin(c.ServicePlugin):
    resource_type = "OS::Heat::Stack"
    notification_targets = HEAT_TARGETS
    event_types = ("orchestration.stack.*",)
    admin_only_fields = ()
    mapping = c.mapping_with(**{
        "stack_name": c.NAME,
        "stack_status": c.KEYWORD,
        "stack_status_reason": c.TEXT,
        "stack_owner": c.KEYWORD,
        "action": c.KEYWORD,
        "creation_time": c.DATE,
        "updated_time": c.DATE,
    })

    def _changes(self, n: Notification) -> list[DocumentChange]:
        parts = n.event_type.split(".")
        if len(parts) != 4 or parts[3] not in _PHASE_STATUS:
            raise PayloadError(f"{n.event_type}: expected orchestration.stack."
                               f"<action>.<start|end|error>")
        action, phase = parts[2].upper(), parts[3]
        p = self.payload_dict(n)
        identity = self.require(p, "stack_identity")
        if not isinstance(identity, str):
            raise PayloadError("payload.stack_identity is not a string")
        stack_id = stack_id_of(identity)
        project_id = p.get("tenant_id")
        version = self.version(n)  # see the module docstring
        if action == "DELETE" and phase == "end":
            return [self.delete(n, stack_id, project_id, version)]

        state = p.get("state")
        # "Unknown" when Heat had no action/status yet: the event type tells.
        state_action, _, status = (state or "").partition("_")
        if status not in _STATUSES:
            state_action, status = action, _PHASE_STATUS[phase]
        created = c.iso(p.get("create_at"), "create_at")
        updated_time = c.iso(p.get("updated_at"), "updated_at")
        return [self.index(n, {
            "id": stack_id,
            "stack_name": p.get("stack_name"),
            "name": p.get("stack_name"),
            "description": p.get("description"),
            "stack_status": f"{state_action}_{status}",
            "status": status,
            "action": state_action,
            "stack_status_reason": p.get("state_reason"),
            "stack_owner": p.get("username") or p.get("user_id"),
            # user_id is the *name* (deprecated); user_identity is the id.
            "user_id": p.get("user_identity"),
            "project_id": project_id,
            "tenant_id": project_id,
            "tags": c.as_list(p.get("tags"), "tags"),
            "creation_time": created,
            "updated_time": updated_time,
            "created_at": created,
            # When this state was reported (see the module docstring).
            "updated_at": c.emitted_iso(n) or updated_time or created,
        }, version)]
