"""The subscriptions API's HTTP calls, on a keystoneauth1 session: what both
``searchlight-forward-subscriptions`` and the OpenStackClient plugin
(forwarders/cmd/osc) send.

The API is found at ``endpoint`` if given, else through the session's catalog
(service type ``search``, the one this API is registered as, with the interface
and region given). Every call returns the answer's JSON (``None`` for 204) or
raises ``APIError`` with the status and the API's error body.
"""
from __future__ import annotations

from keystoneauth1 import adapter

SERVICE_TYPE = "search"
BASE = "/v1/subscriptions"


class APIError(Exception):
    """A 4xx or 5xx answer: ``status`` and ``body`` (the JSON error, or the text)."""

    def __init__(self, status: int, body):
        self.status, self.body = status, body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        super().__init__(f"{message or str(body)[:500] or 'no detail'} (HTTP {status})")


class Client:
    def __init__(self, session, endpoint: str | None = None, *,
                 interface: str | None = None, region_name: str | None = None,
                 service_type: str = SERVICE_TYPE):
        self.http = adapter.Adapter(session, service_type=service_type,
                                    interface=interface, region_name=region_name,
                                    endpoint_override=endpoint.rstrip("/") if endpoint
                                    else None)

    def request(self, method: str, path: str, body=None, params=None,
                authenticated: bool = True):
        resp = self.http.request(path, method, json=body, params=params or None,
                                 raise_exc=False, authenticated=authenticated)
        if resp.status_code == 204:
            return None
        try:
            data = resp.json()
        except ValueError:
            data = {"status": resp.status_code, "body": resp.text[:500]}
        if resp.status_code >= 400:
            raise APIError(resp.status_code, data)
        return data

    def list(self, all_projects: bool = False, project_id: str | None = None,
             limit: int | None = None) -> list[dict]:
        params = {"all_projects": "true"} if all_projects else {}
        if project_id:
            params["project_id"] = project_id
        if limit is not None:
            params["limit"] = limit
        return self.request("GET", BASE, params=params)["subscriptions"]

    def create(self, **fields) -> dict:
        return self.request("POST", BASE, fields)["subscription"]

    def get(self, sub_id: str) -> dict:
        return self.request("GET", f"{BASE}/{sub_id}")["subscription"]

    def update(self, sub_id: str, **fields) -> dict:
        return self.request("PATCH", f"{BASE}/{sub_id}", fields)["subscription"]

    def delete(self, sub_id: str) -> None:
        self.request("DELETE", f"{BASE}/{sub_id}")

    def secrets(self, sub_id: str) -> list[dict]:
        return self.request("GET", f"{BASE}/{sub_id}/secret")["secrets"]

    def rotate_secret(self, sub_id: str, expire_previous_in: float | None = None
                      ) -> list[dict]:
        body = {} if expire_previous_in is None else {
            "expire_previous_in": expire_previous_in}
        return self.request("POST", f"{BASE}/{sub_id}/secret/rotate", body)["secrets"]

    def confirm(self, sub_id: str, token: str) -> dict:
        """The confirmation link's visit (the token is the credential, no Keystone
        token is sent)."""
        return self.request("POST", f"{BASE}/{sub_id}/confirm", params={"token": token},
                            authenticated=False)
