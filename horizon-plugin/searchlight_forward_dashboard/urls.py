"""Every live panel's URLs: the table, and the session-token endpoint its script
calls (POST, CSRF-protected, same origin)."""
from django.urls import path

from searchlight_forward_dashboard import views


def patterns() -> list:
    """A new list for each panel (Horizon decorates the patterns it is given)."""
    return [
        path("", views.LiveTableView.as_view(), name="index"),
        path("session/", views.SessionTokenView.as_view(), name="session"),
    ]


def search_patterns() -> list:
    """The Search panel's: its page, the session token, and the search API's resource
    types and facets asked on the user's behalf (the token stays server-side)."""
    return [
        path("", views.SearchView.as_view(), name="index"),
        path("session/", views.SessionTokenView.as_view(), name="session"),
        path("plugins/", views.SearchAPIView.as_view(api_path="/v1/search/plugins"),
             name="plugins"),
        path("facets/", views.SearchAPIView.as_view(api_path="/v1/search/facets"),
             name="facets"),
    ]


urlpatterns = patterns()
