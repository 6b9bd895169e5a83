"""scripts/servers.py as a module, for tooling that reuses its server classes (a
private RabbitMQ or HAProxy of a test's own): one load, shared."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("sf_servers", ROOT / "scripts" / "servers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


servers = _load()
