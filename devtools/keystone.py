"""The local Keystone (scripts/servers.py) as tests use it: real users and projects
from ``accounts.json``, real tokens, short-lived tokens and revocation."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from oslo_config import cfg

REPO = pathlib.Path(__file__).resolve().parent.parent
ACCOUNTS = pathlib.Path(os.environ.get(
    "SF_KEYSTONE_ACCOUNTS",
    pathlib.Path(os.environ.get("SF_STATE_DIR") or REPO / ".state") / "keystone"
    / "accounts.json"))
UTC = datetime.timezone.utc


class LocalKeystone:
    """Users by their accounts.json name (``demo``, ``demo-reader``, ``alt``,
    ``alt-reader``, ``admin``, ``service``) or added with ``add_user``."""

    def __init__(self, path: pathlib.Path = ACCOUNTS):
        data = json.loads(path.read_text())
        self.auth_url = data["auth_url"]
        self.projects: dict[str, str] = dict(data["projects"])
        self.users: dict[str, dict] = dict(data["users"])
        self._admin = self.session("admin")
        self._created: list[str] = []

    def session(self, user: str) -> ks_session.Session:
        """A keystoneauth1 session logged in as ``user``, scoped to its project."""
        u = self.users[user]
        auth = v3.Password(auth_url=self.auth_url, username=u["name"],
                           password=u["password"], user_domain_id=u["domain_id"],
                           project_id=u["project_id"])
        return ks_session.Session(auth=auth, timeout=30)

    def token(self, user: str) -> str:
        """A new project-scoped token for ``user``."""
        return self.session(user).get_token()

    def short_token(self, user: str, seconds: float) -> str:
        """A real token that expires in about ``seconds`` (Keystone caps a token's
        life at its application credential's expiry, to the whole second)."""
        sess = self.session(user)
        u = self.users[user]
        own = set(sess.auth.get_access(sess).role_names)
        expires = (datetime.datetime.now(UTC) + datetime.timedelta(seconds=seconds))
        for _ in range(3):
            credential = sess.post(
                f"{self.auth_url}/users/{u['user_id']}/application_credentials",
                json={"application_credential": {
                    "name": f"sft-short-{uuid.uuid4().hex[:8]}",
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
            ).json()["application_credential"]
            # Once in a full run the local Keystone (threaded) gave a credential a role
            # the user does not hold (admin, for demo), and it could not be used:
            # such a credential is deleted and made again.
            if {r["name"] for r in credential.get("roles", [])} <= own:
                break
            sess.delete(f"{self.auth_url}/users/{u['user_id']}/application_credentials/"
                        f"{credential['id']}")
        else:
            raise RuntimeError(f"Keystone gave {user}'s application credentials roles "
                               f"it does not hold, three times")
        auth = v3.ApplicationCredential(auth_url=self.auth_url,
                                        application_credential_id=credential["id"],
                                        application_credential_secret=credential["secret"])
        return ks_session.Session(auth=auth, timeout=30).get_token()

    def revoke(self, token: str) -> None:
        self._admin.delete(f"{self.auth_url}/auth/tokens",
                           headers={"X-Subject-Token": token})

    def add_project(self, name: str) -> str:
        project = self._admin.post(f"{self.auth_url}/projects", json={"project": {
            "name": name, "domain_id": "default"}}).json()["project"]
        self.projects[name] = project["id"]
        self._created.append(f"/projects/{project['id']}")
        return project["id"]

    def add_user(self, name: str, project: str, roles: list[str]) -> dict:
        """A new user with ``roles`` on ``project`` (a name in ``projects``)."""
        password = f"{name}-{uuid.uuid4().hex}"
        user = self._admin.post(f"{self.auth_url}/users", json={"user": {
            "name": name, "password": password, "domain_id": "default"}}).json()["user"]
        self._created.append(f"/users/{user['id']}")
        project_id = self.projects[project]
        for role in roles:
            role_id = self._admin.get(f"{self.auth_url}/roles?name={role}").json()[
                "roles"][0]["id"]
            self._admin.put(f"{self.auth_url}/projects/{project_id}/users/{user['id']}"
                            f"/roles/{role_id}")
        self.users[name] = {"name": name, "password": password, "user_id": user["id"],
                            "domain_id": "default", "project": project,
                            "project_id": project_id, "roles": roles}
        return self.users[name]

    def add_role(self, user: str, project: str, role: str) -> None:
        """Give ``user`` (a name in ``users``) ``role`` on another ``project``."""
        role_id = self._admin.get(f"{self.auth_url}/roles?name={role}").json()[
            "roles"][0]["id"]
        self._admin.put(f"{self.auth_url}/projects/{self.projects[project]}/users/"
                        f"{self.users[user]['user_id']}/roles/{role_id}")

    def check_token(self, token: str) -> dict:
        """Keystone's view of ``token``; raises (keystoneauth1 NotFound) if it is
        revoked, expired or unknown."""
        return self._admin.get(f"{self.auth_url}/auth/tokens",
                               headers={"X-Subject-Token": token}).json()["token"]

    def cleanup(self) -> None:
        """Delete what ``add_project`` and ``add_user`` made."""
        for path in reversed(self._created):
            self._admin.delete(f"{self.auth_url}{path}", raise_exc=False)
        self._created.clear()

    @contextlib.contextmanager
    def catalog_entry(self, service_type: str, name: str, url: str,
                      interfaces: tuple[str, ...] = ("public", "internal")):
        """A service of the caller's own (``service_type``, ``name``) whose endpoints
        (``url``, one per interface) are in a region of its own, also named ``name``;
        yields the region id, which a client passes (``region_name``,
        ``--os-region-name``) to find ``url`` through the catalog. Everything is
        deleted on exit. The local servers' own entries (RegionOne) are not touched,
        and a client that names RegionOne never sees this one."""
        base = self.auth_url
        self._admin.post(f"{base}/regions", json={"region": {
            "id": name, "description": "searchlight-forward test run"}})
        try:
            service = self._admin.post(f"{base}/services", json={"service": {
                "type": service_type, "name": name, "enabled": True,
                "description": "searchlight-forward test run"}}).json()["service"]
            try:
                for interface in interfaces:
                    self._admin.post(f"{base}/endpoints", json={"endpoint": {
                        "service_id": service["id"], "interface": interface,
                        "region_id": name, "url": url, "enabled": True}})
                yield name
            finally:        # a service's endpoints are deleted with it
                self._admin.delete(f"{base}/services/{service['id']}", raise_exc=False)
        finally:
            self._admin.delete(f"{base}/regions/{name}", raise_exc=False)

    def service_conf(self) -> str:
        """The ``[websocket_keystone]`` section for the local service user."""
        s = self.users["service"]
        return (f"[websocket_keystone]\nauth_type = password\nauth_url = {self.auth_url}\n"
                f"username = {s['name']}\npassword = {s['password']}\n"
                f"project_name = {s['project']}\nuser_domain_id = {s['domain_id']}\n"
                f"project_domain_id = {s['domain_id']}\n")

    def authtoken_conf(self) -> str:
        """The ``[keystone_authtoken]`` section for keystonemiddleware (the API)."""
        s = self.users["service"]
        return (f"[keystone_authtoken]\nwww_authenticate_uri = {self.auth_url}\ninterface = public\n"
                f"auth_type = password\nauth_url = {self.auth_url}\n"
                f"username = {s['name']}\npassword = {s['password']}\n"
                f"project_name = {s['project']}\nuser_domain_id = {s['domain_id']}\n"
                f"project_domain_id = {s['domain_id']}\n")

    def validator(self, tmp_path: pathlib.Path, **options):
        """A KeystoneValidator built the way the server builds it: from a config
        file, through oslo.config and keystoneauth1's loaders."""
        from forwarders.websocket.auth import load_validator
        extra = "".join(f"{k} = {v}\n" for k, v in options.items())
        path = tmp_path / f"keystone-{uuid.uuid4().hex[:6]}.conf"
        path.write_text(self.service_conf() + extra)
        conf = cfg.ConfigOpts()
        conf([], project="searchlight-forward", default_config_files=[str(path)])
        return load_validator("keystone", {"conf": conf})


class PrivateKeystone:
    """A Keystone of one test's own, to stop and start at will without touching the
    one other tests use: a consistent copy of the local Keystone's database and keys
    (so its users, projects and tokens are the same), served by the local Keystone's
    own virtualenv and launcher on another port, its catalog pointing at itself.
    ``accounts`` is a ``LocalKeystone`` whose sessions and tokens come from it."""

    def __init__(self, directory: pathlib.Path, port: int, python: pathlib.Path | None = None,
                 state: pathlib.Path = ACCOUNTS.parent):
        self.dir, self.port = directory, port
        self.url = f"http://127.0.0.1:{port}/v3"
        self.python = python or state / "venv" / "bin" / "python"
        self.dir.mkdir(parents=True, exist_ok=True)
        # The backup API copies a consistent snapshot while the other Keystone writes.
        with sqlite3.connect(state / "keystone.db") as source, \
                sqlite3.connect(self.dir / "keystone.db") as target:
            source.backup(target)
        for repo in ("fernet-keys", "credential-keys", "receipt-keys"):
            shutil.copytree(state / repo, self.dir / repo, dirs_exist_ok=True)
        self.conf = self.dir / "keystone.conf"
        self.conf.write_text((state / "keystone.conf").read_text().replace(
            str(state), str(self.dir)))
        accounts = json.loads(ACCOUNTS.read_text())
        accounts["auth_url"] = self.url
        (self.dir / "accounts.json").write_text(json.dumps(accounts))
        self.log = self.dir / "keystone.log"
        self._process: subprocess.Popen | None = None
        self.accounts: LocalKeystone | None = None

    def start(self, timeout: float = 90.0) -> "PrivateKeystone":
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.conf)
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [str(self.python), str(REPO / "scripts" / "keystone_launcher.py"),
                 "--port", str(self.port)], env=env, stdout=log, stderr=log,
                cwd=self.dir)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private Keystone did not start; see {self.log}")
            time.sleep(0.2)
        if self.accounts is None:
            self.accounts = LocalKeystone(self.dir / "accounts.json")
            self._point_catalog_here()
        return self

    def stop(self) -> None:
        """As a restart begins: the process ends, its port refuses connections."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _point_catalog_here(self) -> None:
        # The copy's catalog names the other Keystone's address: validations would
        # go there and never notice this one's restart.
        other = urllib.parse.urlsplit(json.loads(ACCOUNTS.read_text())["auth_url"]).netloc
        admin = self.accounts.session("admin")
        for endpoint in admin.get(f"{self.url}/endpoints").json()["endpoints"]:
            url = urllib.parse.urlsplit(endpoint["url"])
            if url.netloc == other:
                here = url._replace(netloc=f"127.0.0.1:{self.port}").geturl()
                admin.patch(f"{self.url}/endpoints/{endpoint['id']}",
                            json={"endpoint": {"url": here}})
