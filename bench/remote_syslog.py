"""searchlight-forward remote syslog benchmark: how fast the syslog sink hands changes
to a real rsyslog over TCP, TLS and UDP, against a bare socket sending the same bytes.

    .venv/bin/python bench/remote_syslog.py              # 20,000 changes per transport (~30 s)
    .venv/bin/python bench/remote_syslog.py --count 2000 # a smoke run

A private rsyslogd (Debian's; `make test-servers` installs it) on 127.0.0.1 with its own
certificates and files (devtools/rsyslog.py), in a temporary
directory removed at the end. For each transport: the sink's deliver() in batches of
100 (the delivery service's default), then a bare socket (TLS wrapped the same way)
sending the same framed bytes, in the same run; then a wait (bounded) until rsyslog
has written every message, which is counted. Figures: changes/s, CPU ms per change
of this process (the sink's cost), and the sink/bare ratio.

Writes bench/results/remote_syslog.json and remote_syslog.md.
"""
from __future__ import annotations

import os
import pathlib
import socket
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import tqdm  # noqa: E402

import harness  # noqa: E402

from forwarders.sinks.base import SinkContext  # noqa: E402
from forwarders.sinks.syslog.message import octet_counted  # noqa: E402
from forwarders.sinks.syslog.sink import SyslogSink  # noqa: E402
from searchlight_forward.model.envelope import Envelope  # noqa: E402
from devtools.rsyslog import Rsyslog  # noqa: E402

BATCH = 100


def envelopes(count: int, tag: str) -> list[Envelope]:
    return [Envelope("OS::Nova::Server", f"{tag}-{i}", "0123456789abcdef0123456789abcdef",
                     1772452807000000000 + i, "index", "compute.instance.update",
                     "2026-03-02 12:00:07.270156",
                     {"name": f"web-{i % 1000:03d}", "status": "ACTIVE"}, "info")
            for i in range(count)]


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def written(rsyslog: Rsyslog, app: str) -> int:
    if not rsyslog.log.exists():
        return 0
    return rsyslog.log.read_bytes().count(f" {app} ".encode())


def wait_written(rsyslog: Rsyslog, app: str, count: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    n = written(rsyslog, app)
    while n < count and time.monotonic() < deadline:
        time.sleep(0.2)
        n = written(rsyslog, app)
    return n


def run_sink(rsyslog: Rsyslog, listener: str, count: int) -> dict:
    app = f"bench-sink-{listener}"
    certs = rsyslog.certs
    options = {"url": rsyslog.url(listener), "app_name": app, "timeout": "5"}
    if listener == "tls":
        options.update(ca_file=certs.ca, cert_file=certs.client_cert,
                       key_file=certs.client_key)
    sink = SyslogSink("bench", options, SinkContext())
    items = envelopes(count, app)
    c0, t0 = cpu(), time.perf_counter()
    for i in tqdm.trange(0, count, BATCH, desc=f"  sink {listener}", leave=False):
        sink.deliver(items[i:i + BATCH])
    wall, used = time.perf_counter() - t0, cpu() - c0
    sink.close()
    got = wait_written(rsyslog, app, count)
    return {"changes": count, "written_by_rsyslog": got, "per_s": round(count / wall),
            "cpu_ms_per_change": round(1000 * used / count, 4)}


def run_bare(rsyslog: Rsyslog, listener: str, count: int) -> dict:
    """The same bytes on a bare socket: the ceiling of this machine and rsyslog."""
    app = f"bench-bare-{listener}"
    certs = rsyslog.certs
    sink = SyslogSink("fmt", {"url": rsyslog.url(listener), "app_name": app},
                      SinkContext())
    payloads = [sink.message(e) for e in envelopes(count, app)]
    port = getattr(rsyslog, listener)
    if listener == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
    else:
        sock = socket.create_connection(("127.0.0.1", port))
        if listener == "tls":
            context = ssl.create_default_context(cafile=certs.ca)
            context.load_cert_chain(certs.client_cert, certs.client_key)
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    c0, t0 = cpu(), time.perf_counter()
    for data in payloads:
        if listener == "udp":
            sock.send(data)
        else:
            sock.sendall(octet_counted(data))
    wall, used = time.perf_counter() - t0, cpu() - c0
    sock.close()
    got = wait_written(rsyslog, app, count)
    return {"changes": count, "written_by_rsyslog": got, "per_s": round(count / wall),
            "cpu_ms_per_change": round(1000 * used / count, 4)}


def main(argv=None) -> int:
    p = harness.arguments(__doc__, results="remote_syslog.json and remote_syslog.md",
                          keep=False)
    p.add_argument("--count", type=int, default=20000, help="changes per transport")
    args = harness.parse(p, argv)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="sfb-syslog-") as tmp:
        rsyslog = Rsyslog(pathlib.Path(tmp))
        try:
            for listener in ("tcp", "tls", "udp"):
                sink, bare = run_sink(rsyslog, listener, args.count), \
                    run_bare(rsyslog, listener, args.count)
                results[listener] = {"sink": sink, "bare": bare,
                                     "sink_over_bare": round(sink["per_s"]
                                                             / max(bare["per_s"], 1), 2)}
                print(f"  {listener}: sink {sink['per_s']}/s ({sink['cpu_ms_per_change']} "
                      f"ms CPU per change, rsyslog wrote {sink['written_by_rsyslog']}), "
                      f"bare socket {bare['per_s']}/s: {results[listener]['sink_over_bare']}x")
        finally:
            rsyslog.stop()
    lines = ["# Remote syslog benchmark", "",
             "| transport | sink changes/s | CPU ms per change | written by rsyslog | "
             "bare socket /s | sink / bare |", "|---|---|---|---|---|---|"]
    for listener, r in results.items():
        lines.append(f"| {listener} | {r['sink']['per_s']} | {r['sink']['cpu_ms_per_change']}"
                     f" | {r['sink']['written_by_rsyslog']} of {r['sink']['changes']} | "
                     f"{r['bare']['per_s']} | {r['sink_over_bare']} |")
    harness.write_results(args.output, "remote_syslog", results, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
