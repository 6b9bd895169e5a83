"""A realistic notification stream at a chosen rate (demo and load tooling; not
installed with the service: run it from the repository root).

Publishes through a real ``oslo_messaging.Notifier`` (the services' own exchanges and
topics) what a small cloud does: servers booting, changing state and being deleted,
images uploaded and shared, networks, ports, volumes, DNS and Heat stacks coming
and going, for a few projects. Use it to watch the demo, or to load your own
pipelines:

    .venv/bin/python -m devtools.generate --config-file etc/searchlight-forward.conf --rate 50
    .venv/bin/python -m devtools.generate --config-file ... --count 10000 --rate 0   # flat out

It runs in waves of lifecycles (``--per-type`` resources of every type per wave);
each wave's resource timestamps start after the previous wave's, so what it
publishes is always newer than what an earlier run indexed.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import sys
import time

import tqdm
from oslo_config import cfg

from searchlight_forward.listener.opts import register_messaging
from devtools.publisher import NotificationPublisher
from devtools.simulator import CloudSimulator


def parse_project_ids(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise argparse.ArgumentTypeError("expected name=id[,name=id...]")
    return {name.strip(): pid.strip() for name, pid in pairs}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.generate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", help="takes [DEFAULT] transport_url from it")
    parser.add_argument("--transport-url", help="overrides the config file's")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="notifications per second (0: as fast as possible)")
    parser.add_argument("--count", type=int, default=0,
                        help="stop after this many notifications (0: until Ctrl-C)")
    parser.add_argument("--per-type", type=int, default=5,
                        help="resources of each type per wave")
    parser.add_argument("--delete-ratio", type=float, default=0.2,
                        help="share of resources deleted at the end of their lifecycle")
    parser.add_argument("--projects", default="demo,alt_demo,admin",
                        help="project names to simulate")
    parser.add_argument("--project-ids", type=parse_project_ids, default={},
                        help="pin names to ids, e.g. demo=6d65...,admin=6164... "
                             "(the ids your tokens are scoped to)")
    parser.add_argument("--seed", type=int, default=None, help="repeatable streams")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def transport_url(args) -> str:
    if args.transport_url:
        return args.transport_url
    conf = cfg.ConfigOpts()
    register_messaging(conf)
    conf(["--config-file", args.config_file] if args.config_file else [],
         project="searchlight-forward")
    if not conf.transport_url:
        sys.exit("devtools.generate: no transport_url; give --config-file "
                 "or --transport-url rabbit://user:pass@host:5672/")
    return conf.transport_url


def waves(args):
    """Simulated notifications forever, wave after wave, always newer."""
    projects = tuple(p.strip() for p in args.projects.split(",") if p.strip())
    seed = args.seed if args.seed is not None else int(time.time())
    start = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for wave in itertools.count():
        sim = CloudSimulator(seed=seed + wave, projects=projects, start=start,
                             project_ids=args.project_ids)
        stream = sim.stream(args.per_type, delete_ratio=args.delete_ratio)
        yield from stream
        last = datetime.datetime.fromisoformat(stream[-1].timestamp)
        start = max(last, datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                    ) + datetime.timedelta(seconds=1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    publisher = NotificationPublisher(transport_url(args))
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    stream = waves(args)
    if args.count:
        stream = itertools.islice(stream, args.count)
    bar = tqdm.tqdm(total=args.count or None, unit="notification", disable=args.quiet,
                    desc="publishing")
    next_at = time.monotonic()
    sent = 0
    try:
        for sim in stream:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + interval, time.monotonic() - 1.0)
            # The Notifier stamps the real emission time; resource timestamps are
            # the simulation's, which is what versions come from.
            publisher.publish(sim.exchange, sim.topic, sim.publisher_id, sim.event_type,
                              sim.payload, priority=sim.priority)
            sent += 1
            bar.update(1)
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
        publisher.close()
    print(f"published {sent} notifications", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from searchlight_forward import commands  # noqa: F401 - quiets eventlet warnings
    sys.exit(main())
