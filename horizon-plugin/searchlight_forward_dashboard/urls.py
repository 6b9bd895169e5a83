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


urlpatterns = patterns()
