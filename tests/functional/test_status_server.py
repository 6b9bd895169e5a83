"""The status endpoint of a process holding many descriptors (a delivery process
with thousands of subscriptions keeps a connection per endpoint): it still answers."""
from __future__ import annotations

import resource
import socket
import urllib.request

import pytest

from searchlight_forward.status import StatusServer


def test_the_status_endpoint_answers_with_its_socket_above_descriptor_1024():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"open files hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    held = [socket.socket() for _ in range(1100)]      # what the process holds already
    server = StatusServer("127.0.0.1", 0, lambda: {"pipelines": 10000})
    try:
        assert server.httpd.socket.fileno() > 1024
        server.start()
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            assert resp.status == 200 and b"10000" in resp.read()
    finally:
        server.stop()
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
