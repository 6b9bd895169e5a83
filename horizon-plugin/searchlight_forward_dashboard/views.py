"""The live table's page, and the endpoint that hands its script the session token.

The page carries no token: its script asks ``session/`` for the Horizon session's
project-scoped Keystone token with a same-origin POST that Django's CSRF check
guards, keeps it in memory and sends it in the WebSocket's ``authenticate`` frame
(docs/horizon.md, "The token and who can get it").
"""
import datetime
import logging
import urllib.parse

from django.conf import settings
from django import http
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from horizon import views as horizon_views

from searchlight_forward_dashboard import tables

LOG = logging.getLogger(__name__)
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
    """A panel's live table (templates/.../_frame.html, filled by livetable.js)."""
    template_name = "searchlight_forward_dashboard/live_table.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        panel = self.request.horizon["panel"]
        self.urls = f"horizon:{self.request.horizon['dashboard'].slug}:{panel.slug}"
        options = plugin_options()
        context.update({
            "page_title": panel.name,
            "table_slug": panel.slug,
            "all_projects": panel.all_projects,
            "websocket_url": options["websocket_url"],
            "session_check_interval": options["session_check_interval"],
            "session_url": reverse(f"{self.urls}:session"),
            "login_url": settings.LOGIN_URL,
        })
        context.update(self.table_context(panel))
        return context

    def table_context(self, panel) -> dict:
        table = panel.table
        return {"live_table": table,
                "detail_url": detail_url(table.admin_detail if panel.all_projects
                                         else table.project_detail)}


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


class SearchView(LiveTableView):
    """The Search panel: the same frame in search mode, resource types and facets from
    the search API, results from the same query's live subscription."""

    def table_context(self, panel) -> dict:
        return {"search": True,
                "plugins_url": reverse(f"{self.urls}:plugins"),
                "facets_url": reverse(f"{self.urls}:facets"),
                "detail_urls": {t.resource_type: detail_url(t.project_detail)
                                for t in tables.TABLES}}


class SearchAPIView(View):
    """GET: the search API's answer to ``api_path``, asked with the user's token.

    The API is the operator's ``search_url`` or the user's catalog entry of type
    ``search``; only the facets' own parameters are passed on. The answer (or the
    API's error) goes back as it is, never cached.
    """
    api_path = ""
    PASSED = ("type", "limit_terms", "exclude_options", "include_fields")
    http_method_names = ["get"]

    def get(self, request, *args, **kwargs):
        from openstack_auth import utils as auth_utils
        try:
            base = plugin_options()["search_url"] or self.catalog_url(request)
        except Exception as exc:  # noqa: BLE001 - said to the page, and logged
            LOG.warning("searchlight-forward: no search API for user %s: %s",
                        request.user.id, exc)
            return self.answer({"error": {
                "message": "The search service (catalog type 'search') is not in your "
                           "catalog: ask the operator to register searchlight-forward-api "
                           "or to set SEARCHLIGHT_FORWARD['search_url']."}}, 503)
        params = {k: v for k, v in request.GET.items() if k in self.PASSED}
        url = base.rstrip("/") + self.api_path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            response = auth_utils.get_session().get(
                url, authenticated=False, raise_exc=False, timeout=15,
                headers={"X-Auth-Token": request.user.token.id,
                         "Accept": "application/json"})
        except Exception as exc:  # noqa: BLE001 - the API is down or unreachable
            LOG.warning("searchlight-forward: search API %s unreachable: %s", base, exc)
            return self.answer({"error": {"message": "The search API does not answer; "
                                                     "try again later."}}, 502)
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"message": f"The search API answered {response.status_code} "
                                         "without JSON."}}
        return self.answer(body, response.status_code)

    @staticmethod
    def catalog_url(request) -> str:
        from openstack_dashboard.api import base
        return base.url_for(request, "search")

    @staticmethod
    def answer(body, status: int):
        response = http.JsonResponse(body, status=status, safe=False)
        response["Cache-Control"] = "no-store, private"
        return response
