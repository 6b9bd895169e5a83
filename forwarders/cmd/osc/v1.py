"""``openstack subscription ...``: the subscriptions API (docs/subscriptions.md) as
OpenStackClient commands (cliff Listers and ShowOnes: ``-f json``, ``-c``)."""
from __future__ import annotations

import logging

from keystoneauth1 import exceptions as ks_exceptions
from osc_lib import exceptions
from osc_lib import utils
from osc_lib.cli import format_columns
from osc_lib.command import command
from openstackclient.identity import common as identity_common

LOG = logging.getLogger(__name__)

PROTOCOLS = ("webhook", "email", "syslog", "feed")
LIST_FIELDS = ("resource_types", "event_types", "priorities")
LIST_COLUMNS = ("id", "name", "protocol", "endpoint", "state", "project_id")
LONG_COLUMNS = LIST_COLUMNS + ("all_projects", "role", "resource_types", "event_types",
                               "priorities", "rate_limit", "state_reason")
HEADINGS = {"id": "ID", "project_id": "Project ID", "all_projects": "All Projects",
            "rate_limit": "Rate Limit", "state_reason": "State Reason",
            "resource_types": "Resource Types", "event_types": "Event Types"}
FORMATTERS = {f: format_columns.ListColumn for f in LIST_FIELDS}


def _client(cmd):
    return cmd.app.client_manager.searchlight_forward


def _heading(field: str) -> str:
    return HEADINGS.get(field, field.replace("_", " ").title())


def _shown(sub: dict):
    """A ShowOne's (columns, values): every field the API answered, by name."""
    fields = sorted(sub)
    return fields, utils.get_dict_properties(sub, fields, formatters=FORMATTERS)


def _project_id(cmd, parsed_args) -> str:
    """``--project``'s ID: looked up by name or ID in Identity, or taken as an ID
    where Identity cannot be reached (no identity endpoint in the region named)."""
    try:
        return identity_common.find_project(cmd.app.client_manager.identity,
                                            parsed_args.project,
                                            parsed_args.project_domain).id
    except ks_exceptions.EndpointNotFound:
        return parsed_args.project


def _add_selection(parser) -> None:
    parser.add_argument("--name", metavar="<name>", help="Subscription name")
    parser.add_argument("--resource-type", metavar="<resource-type>",
                        dest="resource_types", action="append",
                        help="Resource type to receive (OS::Nova::Server); repeat "
                             "option for several (default on create: every type)")
    parser.add_argument("--event-type", metavar="<pattern>", dest="event_types",
                        action="append",
                        help="fnmatch pattern of event types (compute.instance.*); "
                             "repeat option for several")
    parser.add_argument("--priority", metavar="<priority>", dest="priorities",
                        action="append",
                        help="Notification priority (info, warn, error, critical, "
                             "audit, debug, sample); repeat option for several")
    parser.add_argument("--rate-limit", metavar="<per-second>", type=float,
                        help="Deliveries per second at most")
    parser.add_argument("--email-mode", choices=["each", "digest"],
                        help="E-mail: one message per change, or a digest")
    parser.add_argument("--digest-interval", metavar="<seconds>", type=int,
                        help="E-mail digests: seconds between messages")


def _selection(parsed_args) -> dict:
    return {f: getattr(parsed_args, f) for f in (
        "name", "resource_types", "event_types", "priorities", "rate_limit",
        "email_mode", "digest_interval") if getattr(parsed_args, f) is not None}


class CreateSubscription(command.ShowOne):
    _description = "Create a subscription (pending confirmation by its endpoint)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--protocol", choices=PROTOCOLS, required=True,
                            help="How changes are delivered")
        parser.add_argument("--endpoint", metavar="<endpoint>",
                            help="http(s) URL, e-mail address or syslog+tls://host:port "
                                 "(none for a feed)")
        parser.add_argument("--project", metavar="<project>",
                            help="Another project's changes (name or ID; admin)")
        identity_common.add_project_domain_option_to_parser(parser)
        parser.add_argument("--all-projects", action="store_true", default=False,
                            help="Every project's changes (admin only)")
        parser.add_argument("--start-from", choices=["now", "beginning"],
                            help="now: changes after the confirmation (default); "
                                 "beginning: first the current state of everything")
        _add_selection(parser)
        return parser

    def take_action(self, parsed_args):
        fields = {"protocol": parsed_args.protocol, **_selection(parsed_args)}
        if parsed_args.endpoint is not None:
            fields["endpoint"] = parsed_args.endpoint
        if parsed_args.project:
            fields["project_id"] = _project_id(self, parsed_args)
        if parsed_args.all_projects:
            fields["all_projects"] = True
        if parsed_args.start_from:
            fields["start_from"] = parsed_args.start_from
        return _shown(_client(self).create(**fields))


class ListSubscription(command.Lister):
    _description = "List subscriptions"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--all-projects", action="store_true", default=False,
                            help="Include all projects (admin only)")
        parser.add_argument("--project", metavar="<project>",
                            help="List subscriptions of this project (name or ID; admin)")
        identity_common.add_project_domain_option_to_parser(parser)
        parser.add_argument("--limit", metavar="<num-subscriptions>", type=int,
                            help="Maximum number of subscriptions to display")
        parser.add_argument("--long", action="store_true", default=False,
                            help="List additional fields in output")
        return parser

    def take_action(self, parsed_args):
        project_id = None
        if parsed_args.project:
            project_id = _project_id(self, parsed_args)
        subs = _client(self).list(all_projects=parsed_args.all_projects,
                                  project_id=project_id, limit=parsed_args.limit)
        fields = LONG_COLUMNS if parsed_args.long else LIST_COLUMNS
        return ([_heading(f) for f in fields],
                (utils.get_dict_properties(s, fields, formatters=FORMATTERS)
                 for s in subs))


def _subscription_argument(parser, help_text: str) -> None:
    """The one positional argument of the commands about one subscription."""
    parser.add_argument("subscription", metavar="<subscription>", help=help_text)


class ShowSubscription(command.ShowOne):
    _description = "Display subscription details"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _subscription_argument(parser, "Subscription to display (ID)")
        return parser

    def take_action(self, parsed_args):
        return _shown(_client(self).get(parsed_args.subscription))


class SetSubscription(command.Command):
    _description = "Set subscription properties"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _subscription_argument(parser, "Subscription to modify (ID)")
        parser.add_argument("--endpoint", metavar="<endpoint>",
                            help="New endpoint (to be confirmed again)")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--enable", dest="state", action="store_const",
                           const="active", help="Enable the subscription (an "
                           "unconfirmed endpoint is asked to confirm again)")
        state.add_argument("--disable", dest="state", action="store_const",
                           const="disabled", help="Disable the subscription")
        _add_selection(parser)
        return parser

    def take_action(self, parsed_args):
        fields = _selection(parsed_args)
        for f in ("endpoint", "state"):
            if getattr(parsed_args, f) is not None:
                fields[f] = getattr(parsed_args, f)
        if not fields:
            raise exceptions.CommandError("Nothing to set: give at least one option")
        _client(self).update(parsed_args.subscription, **fields)


class DeleteSubscription(command.Command):
    _description = "Delete subscription(s)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("subscriptions", metavar="<subscription>", nargs="+",
                            help="Subscription(s) to delete (ID)")
        return parser

    def take_action(self, parsed_args):
        client, failed = _client(self), 0
        for sub_id in parsed_args.subscriptions:
            try:
                client.delete(sub_id)
            except Exception as exc:  # noqa: BLE001 - OSC's multi-delete convention
                failed += 1
                LOG.error("Failed to delete subscription %s: %s", sub_id, exc)
        if failed:
            raise exceptions.CommandError(
                f"{failed} of {len(parsed_args.subscriptions)} subscriptions failed "
                "to delete.")


class ConfirmSubscription(command.ShowOne):
    _description = ("Confirm a subscription's endpoint with the token of its "
                    "confirmation link (the token is the credential: no Keystone "
                    "token is sent to the API)")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _subscription_argument(parser, "Subscription to confirm (ID)")
        parser.add_argument("--token", metavar="<token>", required=True,
                            help="The confirmation link's token (its ?token=)")
        return parser

    def take_action(self, parsed_args):
        return _shown(_client(self).confirm(parsed_args.subscription, parsed_args.token))


def _secrets(secrets: list[dict]):
    return (("Secret", "Expires At"),
            ((s.get("secret"), s.get("expires_at")) for s in secrets))


class ShowSubscriptionSecret(command.Lister):
    _description = "Display a webhook subscription's signing secrets (newest first)"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _subscription_argument(parser, "Subscription (ID)")
        return parser

    def take_action(self, parsed_args):
        return _secrets(_client(self).secrets(parsed_args.subscription))


class RotateSubscriptionSecret(command.Lister):
    _description = ("Make a new signing secret for a webhook subscription; list the "
                    "secrets, the new one first")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _subscription_argument(parser, "Subscription (ID)")
        parser.add_argument("--expire-previous-in", metavar="<seconds>", type=float,
                            help="Seconds the previous secret still signs")
        return parser

    def take_action(self, parsed_args):
        return _secrets(_client(self).rotate_secret(parsed_args.subscription,
                                                    parsed_args.expire_previous_in))
