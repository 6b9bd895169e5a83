"""A Horizon of a test's or a benchmark's own, from the local servers' Horizon venv.

``scripts/servers.py up`` installs Horizon 27 with the plugin (horizon-plugin/) into
``<state>/horizon/venv``, writes its settings and collects and compresses its static
files; this starts another waitress process of that Horizon on a port of its own,
its live tables pointed at the caller's WebSocket server (SF_HORIZON_WEBSOCKET_URL,
read by the settings snippet servers.py wrote) and its Search panel at the caller's
search API (SF_HORIZON_SEARCH_URL). ``log_in`` goes through Horizon's
own login form, as a user does.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from devtools.net import free_port

REPO = pathlib.Path(__file__).resolve().parent.parent
STATE = pathlib.Path(os.environ.get("SF_STATE_DIR") or REPO / ".state")
VENV = STATE / "horizon" / "venv"


class HorizonProcess:
    def __init__(self, websocket_url: str, log_path: pathlib.Path, port: int | None = None,
                 session_check: int = 30, search_url: str | None = None):
        self.websocket_url = websocket_url
        self.search_url = search_url
        self.port = port or free_port()
        self.log_path = log_path
        self.session_check = session_check
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "HorizonProcess":
        python = VENV / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} is missing: Horizon's venv comes from "
                               "`python3 scripts/servers.py up horizon`")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(DJANGO_SETTINGS_MODULE="openstack_dashboard.settings",
                   PYTHONWARNINGS="ignore", SF_HORIZON_WEBSOCKET_URL=self.websocket_url,
                   SF_HORIZON_SESSION_CHECK=str(self.session_check))
        if self.search_url:             # else the catalog's search service
            env["SF_HORIZON_SEARCH_URL"] = self.search_url
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(python), str(REPO / "scripts" / "horizon_launcher.py"),
                 "--port", str(self.port)],
                env=env, cwd=str(STATE / "horizon"), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Horizon exited at start ({self.proc.returncode}); "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/auth/login/", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Horizon not ready after {timeout:.0f}s; "
                                   f"see {self.log_path}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def log_in(page, horizon_url: str, username: str, password: str,
           next_path: str | None = None) -> None:
    """Horizon's login form, then wait for the page it lands on (``next_path``, else
    the user's home)."""
    page.goto(f"{horizon_url}/auth/login/"
              + (f"?next={urllib.parse.quote(next_path)}" if next_path else ""))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("#loginBtn")
    if "/auth/login/" in page.url:
        raise AssertionError(f"Horizon refused the login of {username}: "
                             f"{page.locator('.alert').all_inner_texts()}")
