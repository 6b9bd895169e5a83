"""Several listener or delivery processes on one host: a second process started with
the same configuration (so the same status port) stops at once with a clear error and
a non-zero exit, while the first goes on serving; given a port of its own (a second
--config-file that sets only that, as docs/operations.md says) it runs beside it."""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.functional.conftest import Process, wait_for, write_pipelines
from tests.functional.delivery_support import pipelines_ini
from tests.functional.test_poison import set_options
from tests.functional.test_status_endpoints import free_port

SECTION = {"listener": "listener", "delivery": "delivery"}


def status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.mark.parametrize("command", ["listener", "delivery"])
def test_a_second_process_on_the_same_status_port_exits_with_a_clear_error(
        command, config_file, names, processes, tmp_path):
    port = free_port()
    set_options(config_file, SECTION[command], f"status_port = {port}")
    write_pipelines(config_file, pipelines_ini(f"{names['zaqar']}-ops", "q",
                                               f"{names['zaqar']}-t"))
    first = processes(command, config_file, "first")
    wait_for(lambda: status(port), 90, f"the first {command}'s /status")

    second = processes(command, config_file, "second")
    code = wait_for(lambda: second.proc.poll(), 60,
                    f"the second {command} to exit (not crash-loop under its master)")
    assert code != 0
    log = second.log()
    assert f"status port 127.0.0.1:{port}" in log and "status_port" in log, log[-2000:]
    assert "docs/operations.md" in log
    assert first.proc.poll() is None and status(port) is not None

    # What the message says to do: a second config file with a port of its own.
    own_port = free_port()
    extra = tmp_path / "second.conf"
    extra.write_text(f"[{SECTION[command]}]\nstatus_port = {own_port}\n")
    third = Process(command, config_file, tmp_path / "third.log")
    third.args += ["--config-file", str(extra)]
    try:
        third.start()
        wait_for(lambda: status(own_port), 90, f"the third {command}'s /status")
        assert first.proc.poll() is None and status(port) is not None
    finally:
        third.stop()
