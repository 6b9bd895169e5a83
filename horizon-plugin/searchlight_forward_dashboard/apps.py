"""On logout, revoke the token the live tables used, so sockets elsewhere close too."""
import logging

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_out

LOG = logging.getLogger(__name__)


def revoke_on_logout(sender, request, user, **kwargs):
    from searchlight_forward_dashboard.views import plugin_options
    if user is None or not plugin_options()["revoke_token_on_logout"]:
        return
    token = getattr(user, "token", None)
    endpoint = getattr(user, "endpoint", None)
    if token is None or not endpoint:
        return
    from openstack_auth import utils
    # A user may revoke their own token: it authenticates its own revocation.
    try:
        response = utils.get_session().delete(
            endpoint.rstrip("/") + "/auth/tokens", authenticated=False, raise_exc=False,
            headers={"X-Auth-Token": token.id, "X-Subject-Token": token.id}, timeout=5)
        if response.status_code not in (204, 404):
            LOG.warning("searchlight-forward: Keystone answered %s revoking the token "
                        "of user %s at logout; its live tables close when it expires",
                        response.status_code, user.id)
    except Exception as exc:  # noqa: BLE001 - logout must go on whatever happens
        LOG.warning("searchlight-forward: could not revoke the token of user %s at "
                    "logout (%s); its live tables close when it expires", user.id, exc)


class SearchlightForwardDashboardConfig(AppConfig):
    name = "searchlight_forward_dashboard"
    verbose_name = "searchlight-forward live tables"

    def ready(self):
        user_logged_out.connect(revoke_on_logout, dispatch_uid="searchlight_forward_revoke")
