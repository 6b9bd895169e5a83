"""Who may do what with subscriptions: oslo.policy rules, with defaults in the
style of OpenStack's secure RBAC (readers read, members manage, admins everything).

Operators override any rule in the policy file (``[oslo_policy] policy_file``); the
sample is ``etc/policy.yaml.sample`` (``oslopolicy-sample-generator --namespace
searchlight-forward``). The target of every check is the subscription's
``project_id`` (None for an all-projects subscription, which only admins match).
"""
from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

ADMIN = "role:admin"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PATH = "/v1/subscriptions"

base_rules = [
    policy.RuleDefault("admin_required", ADMIN, description="An administrator."),
    policy.RuleDefault("project_reader", PROJECT_READER,
                       description="A reader (or more) of the subscription's project."),
    policy.RuleDefault("project_member", PROJECT_MEMBER,
                       description="A member (or more) of the subscription's project."),
]


def _rule(name, check, description, operations):
    return policy.DocumentedRuleDefault(
        name=f"subscriptions:{name}", check_str=check, description=description,
        operations=[{"path": p, "method": m} for p, m in operations])


subscription_rules = [
    _rule("list", "rule:admin_required or rule:project_reader",
          "List a project's subscriptions.", [(PATH, "GET")]),
    _rule("list:all_projects", "rule:admin_required",
          "List the subscriptions of every project (?all_projects=true).",
          [(PATH, "GET")]),
    _rule("create", "rule:admin_required or rule:project_member",
          "Create a subscription for a project.", [(PATH, "POST")]),
    _rule("create:all_projects", "rule:admin_required",
          "Create a subscription that receives every project's changes.",
          [(PATH, "POST")]),
    _rule("get", "rule:admin_required or rule:project_reader",
          "Show a subscription.", [(f"{PATH}/{{id}}", "GET")]),
    _rule("update", "rule:admin_required or rule:project_member",
          "Change a subscription (filters, endpoint, state, rate limit).",
          [(f"{PATH}/{{id}}", "PATCH")]),
    _rule("delete", "rule:admin_required or rule:project_member",
          "Delete a subscription.", [(f"{PATH}/{{id}}", "DELETE")]),
    _rule("secret:get", "rule:admin_required or rule:project_member",
          "Read a webhook subscription's signing secrets.",
          [(f"{PATH}/{{id}}/secret", "GET")]),
    _rule("secret:rotate", "rule:admin_required or rule:project_member",
          "Rotate a webhook subscription's signing secret.",
          [(f"{PATH}/{{id}}/secret/rotate", "POST")]),
    _rule("admin_copy", "rule:admin_required",
          "A subscription made by a caller who passes this rule receives admin copies "
          "(admin-only fields included); others receive the user copy.",
          [(PATH, "POST")]),
]


search_rules = [
    policy.DocumentedRuleDefault(
        name="search:query", check_str="rule:admin_required or rule:project_reader",
        description="Search a project's resources (its role copy: admin copies for "
                    "callers who pass subscriptions:admin_copy).",
        operations=[{"path": "/v1/search", "method": "POST"}]),
    policy.DocumentedRuleDefault(
        name="search:all_projects", check_str="rule:admin_required",
        description="Search every project's resources (all_projects: true).",
        operations=[{"path": "/v1/search", "method": "POST"}]),
    policy.DocumentedRuleDefault(
        name="search:plugins_info", check_str="rule:admin_required or rule:project_reader",
        description="List the resource types served (Searchlight's plugins).",
        operations=[{"path": "/v1/search/plugins", "method": "GET"}]),
    policy.DocumentedRuleDefault(
        name="search:facets", check_str="rule:admin_required or rule:project_reader",
        description="List the fields of each resource type and their values "
                    "(Searchlight's facets; every project's with all_projects for those "
                    "search:all_projects allows).",
        operations=[{"path": "/v1/search/facets", "method": "GET"}]),
]


def list_rules():
    """For oslopolicy-sample-generator (entry point oslo.policy.policies)."""
    return base_rules + subscription_rules + search_rules


def enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    found = policy.Enforcer(conf)
    found.register_defaults(list_rules())
    return found
