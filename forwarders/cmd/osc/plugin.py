"""OpenStackClient plugin module for searchlight-forward's API.

The client is built on OSC's keystoneauth1 session and finds the API through the
catalog: service type ``search`` (what the API is registered as), OSC's
``--os-interface`` and ``--os-region-name``.
"""
from __future__ import annotations

from osc_lib import utils

from forwarders.cmd import subscriptions_client

API_NAME = "searchlight_forward"
API_VERSION_OPTION = "os_searchlight_forward_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = {"1": "forwarders.cmd.subscriptions_client.Client"}


def make_client(instance) -> subscriptions_client.Client:
    """The API's client for OSC's ClientManager ``instance``."""
    return subscriptions_client.Client(instance.session, interface=instance.interface,
                                       region_name=instance.region_name)


def build_option_parser(parser):
    parser.add_argument(
        "--os-searchlight-forward-api-version",
        metavar="<searchlight-forward-api-version>",
        default=utils.env("OS_SEARCHLIGHT_FORWARD_API_VERSION",
                          default=DEFAULT_API_VERSION),
        help=f"searchlight-forward API version, default={DEFAULT_API_VERSION} "
             "(Env: OS_SEARCHLIGHT_FORWARD_API_VERSION)")
    return parser
