"""The live table's page, and the endpoint that hands its script the session token.

The page carries no token: its script asks ``session/`` for the Horizon session's
project-scoped Keystone token with a same-origin POST that Django's CSRF check
guards, keeps it in memory and sends it in the WebSocket's ``authenticate`` frame
(docs/horizon.md, "The token and who can get it").
"""
import datetime

from django.conf import settings
from django import http
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from horizon import views as horizon_views

from searchlight_forward_dashboard import tables

ID_PLACEHOLDER = "__ID__"       # the script puts the row's (URL-encoded) id here


def plugin_options() -> dict:
    return tables.options(getattr(settings, tables.SETTING, None))


def detail_url(spec: str | None) -> str:
    """Horizon's detail URL of a row, with ``__ID__`` for its id; "" if none."""
    if not spec:
        return ""
    if spec.startswith("path:"):
        return settings.WEBROOT + spec[len("path:"):].replace("{id}", ID_PLACEHOLDER)
    try:
        return reverse(spec, args=[ID_PLACEHOLDER])
    except NoReverseMatch:        # that dashboard's plugin is not installed here
        return ""


class LiveTableView(horizon_views.HorizonTemplateView):
    template_name = "searchlight_forward_dashboard/live_table.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        panel = self.request.horizon["panel"]
        dashboard = self.request.horizon["dashboard"]
        table = panel.table
        options = plugin_options()
        context.update({
            "page_title": panel.name,
            "live_table": table,
            "all_projects": panel.all_projects,
            "websocket_url": options["websocket_url"],
            "session_check_interval": options["session_check_interval"],
            "session_url": reverse(f"horizon:{dashboard.slug}:{panel.slug}:session"),
            "detail_url": detail_url(table.admin_detail if panel.all_projects
                                     else table.project_detail),
            "login_url": settings.LOGIN_URL,
        })
        return context


@method_decorator([csrf_protect, never_cache], name="dispatch")
class SessionTokenView(View):
    """POST only: the session's token, its project and expiry, never cached.

    Reached through the panel's URLs, so Horizon's own checks ran first (logged in,
    the panel's permissions); an AJAX request of a logged-out user gets 401.
    """
    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        token = request.user.token
        expires = getattr(token, "expires", None)
        if isinstance(expires, datetime.datetime):
            expires = expires.isoformat()
        response = http.JsonResponse({
            "token": token.id,
            "user_id": request.user.id,
            "project_id": request.user.project_id,
            "expires_at": expires,
        })
        response["Cache-Control"] = "no-store, private"
        return response
