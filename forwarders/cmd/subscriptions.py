"""searchlight-forward-subscriptions: the subscriptions API from a shell.

Credentials are the usual OpenStack ones (``OS_AUTH_URL``, ``OS_USERNAME``,
``OS_PASSWORD``, ``OS_PROJECT_NAME``, ... or ``--os-*`` options, read by
keystoneauth1), so an ``openrc`` file works as it is. The API's address is
``--api-url`` or ``SF_API_URL``; without either, the Keystone catalog's ``search``
service (``--os-interface``/``OS_INTERFACE``, default public, and
``--os-region-name``/``OS_REGION_NAME``), as ``openstack subscription`` finds it.
Every answer is printed as JSON::

    searchlight-forward-subscriptions create --protocol webhook \\
        --endpoint https://hooks.example.com/openstack --resource-type OS::Nova::Server
    searchlight-forward-subscriptions list
    searchlight-forward-subscriptions update ID --disable
    searchlight-forward-subscriptions rotate-secret ID --expire-previous-in 3600
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading

from forwarders.cmd import subscriptions_client

COMMAND = "searchlight-forward-subscriptions"


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--resource-type", dest="resource_types", action="append",
                        help="repeat for several; none: every type")
    parser.add_argument("--event-type", dest="event_types", action="append",
                        help="fnmatch pattern (compute.instance.*); repeat for several")
    parser.add_argument("--priority", dest="priorities", action="append",
                        help="info, warn, error, critical, ...; repeat for several")
    parser.add_argument("--rate-limit", type=float, help="deliveries per second at most")
    parser.add_argument("--email-mode", choices=["each", "digest"])
    parser.add_argument("--digest-interval", type=int, help="seconds")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--api-url", default=os.environ.get("SF_API_URL"),
                   help="the subscriptions API (default: $SF_API_URL; neither: the "
                        "catalog's search service)")
    p.add_argument("--os-interface", default=os.environ.get("OS_INTERFACE", "public"),
                   help="the catalog's interface (default: $OS_INTERFACE or public)")
    p.add_argument("--os-region-name", default=os.environ.get("OS_REGION_NAME"),
                   help="the catalog's region (default: $OS_REGION_NAME)")
    loading.register_session_argparse_arguments(p)
    loading.register_auth_argparse_arguments(p, sys.argv[1:], default="password")
    sub = p.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="the project's subscriptions")
    lst.add_argument("--all-projects", action="store_true", help="every project's (admin)")
    create = sub.add_parser("create", help="a new subscription (pending confirmation)")
    create.add_argument("--protocol", choices=["webhook", "email", "syslog"], required=True)
    create.add_argument("--endpoint", required=True, help="https URL or e-mail address")
    create.add_argument("--project-id", help="another project (admin)")
    create.add_argument("--all-projects", action="store_true", help="every project (admin)")
    create.add_argument("--start-from", choices=["now", "beginning"])
    _selection(create)
    for name, text in (("show", "one subscription"), ("delete", "delete one"),
                       ("secret", "its signing secrets")):
        sub.add_parser(name, help=text).add_argument("id")
    update = sub.add_parser("update", help="change a subscription")
    update.add_argument("id")
    update.add_argument("--endpoint", help="a new endpoint (to be confirmed again)")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="state", action="store_const", const="active")
    state.add_argument("--disable", dest="state", action="store_const", const="disabled")
    _selection(update)
    rotate = sub.add_parser("rotate-secret", help="a new signing secret")
    rotate.add_argument("id")
    rotate.add_argument("--expire-previous-in", type=float,
                        help="seconds the previous secret still signs")
    return p


def call(client: subscriptions_client.Client, args):
    """The parsed command's call; the answer in the API's own shape."""
    fields = ("name", "resource_types", "event_types", "priorities", "rate_limit",
              "email_mode", "digest_interval", "endpoint", "state", "protocol",
              "project_id", "start_from")
    body = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    if args.command == "list":
        return {"subscriptions": client.list(all_projects=args.all_projects)}
    if args.command == "create":
        if args.all_projects:
            body["all_projects"] = True
        return {"subscription": client.create(**body)}
    if args.command == "update":
        return {"subscription": client.update(args.id, **body)}
    if args.command == "rotate-secret":
        return {"secrets": client.rotate_secret(args.id, args.expire_previous_in)}
    if args.command == "secret":
        return {"secrets": client.secrets(args.id)}
    if args.command == "delete":
        return client.delete(args.id)
    return {"subscription": client.get(args.id)}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        auth = loading.load_auth_from_argparse_arguments(args)
    except ks_exceptions.ClientException as exc:
        sys.exit(f"{COMMAND}: credentials: {exc} (source an openrc file or give --os-*)")
    sess = loading.load_session_from_argparse_arguments(args, auth=auth)
    client = subscriptions_client.Client(sess, args.api_url, interface=args.os_interface,
                                         region_name=args.os_region_name)
    failed = False
    try:
        data = call(client, args)
    except subscriptions_client.APIError as exc:
        data, failed = exc.body, True
    except ks_exceptions.ClientException as exc:
        sys.exit(f"{COMMAND}: {exc}")
    if data is not None:
        print(json.dumps(data, indent=2, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
