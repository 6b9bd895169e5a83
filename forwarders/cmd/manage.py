"""searchlight-forward-manage: indices, dead letters, and what the pipelines send.

    searchlight-forward-manage --config-file FILE create|show|delete|rebuild [--group G]
    searchlight-forward-manage --config-file FILE dead-letters list|show|delete|replay [ID ...]
    searchlight-forward-manage --config-file FILE explain [--pipeline P] [--view V]
                                                          [--type T] [--subscription ID]
    searchlight-forward-manage --config-file FILE check
    searchlight-forward-manage --config-file FILE cursors [--group G]
    searchlight-forward-manage --config-file FILE replay PIPELINE --to start|now|TIME|POS
    searchlight-forward-manage --config-file FILE push PIPELINE TYPE:ID [TYPE:ID ...]
"""
from __future__ import annotations

import json
import sys
import time

import tqdm
from oslo_config import cfg

from forwarders import explain
from forwarders.delivery import replay
from forwarders.delivery.cursors import CursorStore
from forwarders.pipeline import loader
from forwarders.pipeline.pipeline import FilterFailed
from forwarders.pipeline.view import SUBSCRIPTIONS, WEBSOCKET
from forwarders.subscriptions import catalog as catalog_mod
from forwarders.subscriptions.catalog import Catalog
from forwarders.subscriptions.catalog import CatalogSettings
from forwarders.subscriptions.store import SubscriptionStore
from searchlight_forward import search
from searchlight_forward.changelog.entry import Entry
from searchlight_forward.changelog.position import Position
from forwarders.cmd.common import setup
from searchlight_forward.deadletter import DeadLetterIndex
from searchlight_forward.deployment import Deployment
from searchlight_forward.indexer import indices, layout
from searchlight_forward.indexer.indexer import Indexer
from searchlight_forward.listener.batch import BatchProcessor
from searchlight_forward.model import documents
from searchlight_forward.retry import Policy, Retry


STAGES = ("parse", "plugin", "index", "batch", "dispatch", "rejected", "forward")


def _add_parsers(subparsers):
    for name, text in (("create", "create the group's index and aliases if missing"),
                       ("show", "show the group's index, aliases and document counts"),
                       ("delete", "delete the group's indices (asks unless --yes)"),
                       ("rebuild", "copy the group into a new index and switch aliases")):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("--group", help="resource group (default: every configured one)")
        if name == "delete":
            p.add_argument("--yes", action="store_true", help="do not ask")
    p = subparsers.add_parser("dead-letters", help="inspect and replay dead letters")
    p.add_argument("action", choices=("list", "show", "delete", "replay"))
    p.add_argument("ids", nargs="*", help="record ids (show/delete/replay)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--event-type")
    p.add_argument("--stage", choices=STAGES)
    p = subparsers.add_parser("explain", help="the fields each pipeline's sink and each "
                                              "view's readers receive, per resource "
                                              "type and role")
    p.add_argument("--pipeline", help="only this pipeline (or view)")
    p.add_argument("--view", help="only this view")
    p.add_argument("--type", help="only this resource type, e.g. OS::Nova::Server")
    p.add_argument("--subscription", metavar="ID",
                   help="a tenant's subscription: its role copy and selection through the "
                        "subscriptions pipeline's filters")
    subparsers.add_parser("check", help="refuse pipelines whose tenant-facing sink (and "
                                        "views whose readers) would receive an "
                                        "admin-only field (exit 1)")
    p = subparsers.add_parser("cursors", help="every pipeline's cursor: position, owner, "
                                              "last error")
    p.add_argument("--group", help="resource group (default: every configured one)")
    p = subparsers.add_parser("replay", help="move a pipeline's cursor; its sink receives "
                                             "the latest state of what changed since, "
                                             "even what it had sent before")
    p.add_argument("pipeline", help="pipeline name, as in forwarders.ini")
    p.add_argument("--to", required=True,
                   help="start | now | an ISO 8601 time | <index>:<seq_no>[,...]")
    p.add_argument("--group", help="resource group (default: every configured one)")
    p = subparsers.add_parser("push", help="send the current state of chosen resources "
                                           "to one pipeline's sink, now")
    p.add_argument("pipeline", help="pipeline name, as in forwarders.ini")
    p.add_argument("resources", nargs="+", metavar="TYPE:ID",
                   help="e.g. OS::Nova::Server:6b1e2c8a-...")


COMMAND = cfg.SubCommandOpt("command", title="commands", handler=_add_parsers,
                            help="what to do")


def main(argv: list[str] | None = None) -> None:
    conf = setup(argv, cli_opts=[COMMAND], logs_to_stderr=True)
    deployment = Deployment.from_conf(conf)
    cmd = conf.command
    es = search.client(conf)
    if cmd.name == "dead-letters":
        sys.exit(_dead_letters(conf, es, deployment))
    if cmd.name in ("explain", "check"):
        sys.exit(_explain(conf, es, deployment, cmd))
    if cmd.name in ("cursors", "replay"):
        sys.exit(_cursors(conf, es, deployment, cmd))
    if cmd.name == "push":
        sys.exit(_push(conf, es, deployment, cmd))
    chosen = [cmd.group] if cmd.group else deployment.group_names()
    unknown = [g for g in chosen if g not in deployment.group_names()]
    if unknown:
        sys.exit(f"unknown resource group {unknown[0]!r}; configured: "
                 f"{', '.join(deployment.group_names())}")
    shards, replicas = conf.elasticsearch.number_of_shards, conf.elasticsearch.number_of_replicas
    for group in chosen:
        members = deployment.plugins_of(group)
        if cmd.name == "create":
            existing = indices.current_index(es, group)
            name = existing or indices.ensure(es, group, members, shards, replicas)
            print(f"{group}: {'exists' if existing else 'created'} {name}")
        elif cmd.name == "show":
            print(json.dumps({**indices.show(es, group), "server": search.describe(es)},
                             indent=2))
        elif cmd.name == "delete":
            if not cmd.yes and input(f"delete every index of {group}? [y/N] ").lower() != "y":
                print("nothing deleted")
                continue
            print(f"{group}: deleted {', '.join(indices.delete(es, group)) or 'nothing'}")
        elif cmd.name == "rebuild":
            with tqdm.tqdm(desc=f"rebuild {group}", unit="doc") as bar:
                def progress(done, total):
                    bar.total = max(total, done)
                    bar.n = done
                    bar.refresh()
                name = indices.rebuild(es, group, members, shards, replicas, progress)
            print(f"{group}: now served by {name}")
    dl = DeadLetterIndex(es, conf.elasticsearch.dead_letter_index)
    if cmd.name == "create":
        dl.ensure()


def _no_dead_letters(stage: str | None, event_type: str | None) -> str:
    """What ``dead-letters list`` says when nothing matched, and how to filter."""
    chosen = [f"--stage {stage}" if stage else "", f"--event-type {event_type}"
              if event_type else ""]
    chosen = [c for c in chosen if c]
    if chosen:
        return (f"no dead letters match {' '.join(chosen)} (`dead-letters list` without "
                "them lists every stage and event type)")
    return (f"no dead letters (when there are, filter with --stage "
            f"{'|'.join(STAGES)} or --event-type TYPE; --limit N, default 20)")


def _dead_letters(conf, es, deployment: Deployment) -> int:
    cmd = conf.command
    dl = DeadLetterIndex(es, conf.elasticsearch.dead_letter_index)
    if not es.indices.exists(index=dl.index):
        print("no dead letters (the index does not exist yet)")
        return 0
    if cmd.action == "list":
        es.indices.refresh(index=dl.index)
        records = dl.search(cmd.limit, cmd.event_type, cmd.stage)
        for rec in records:
            reason = rec["reason"].splitlines()[0]
            print(f"{rec['id']}  {rec['dead_at'][:19]}  {rec['stage']:<6}  "
                  f"{rec.get('event_type') or '-':<32}  {reason}")
        if not records:
            print(_no_dead_letters(cmd.stage, cmd.event_type))
        return 0
    if not cmd.ids:
        print(f"dead-letters {cmd.action} needs record ids (see `dead-letters list`)")
        return 2
    if cmd.action == "show":
        for rid in cmd.ids:
            rec = dl.get(rid)
            rec["notification"] = json.loads(rec["notification"])
            print(json.dumps(rec, indent=2))
        return 0
    if cmd.action == "delete":
        for rid in cmd.ids:
            dl.delete(rid)
            print(f"deleted {rid}")
        return 0
    # replay: run the stored notification through today's plugins and indexer
    policy = Policy(initial=0.5, maximum=5.0)
    indexer = Indexer(es, deployment.groups, deployment.admin_only, policy,
                      deployment.item_lists)
    processor = BatchProcessor(deployment.plugins, indexer, dl,
                               Retry(policy, "dead-letter write"), deployment.groups)
    failed = 0
    for rid in tqdm.tqdm(cmd.ids, desc="replay", unit="msg"):
        stored = json.loads(dl.get(rid)["notification"])
        message = {k: stored.get(k) for k in ("event_type", "publisher_id", "payload",
                                               "metadata", "ctxt")}
        before = processor.counters["dead_lettered"]
        processor.handle(stored.get("priority") or "info", [message])
        if processor.counters["dead_lettered"] > before:
            failed += 1   # its record was rewritten with today's reason
            print(f"{rid}: still fails; see `dead-letters list` for the reason")
        else:
            dl.delete(rid)
    print(f"replayed {len(cmd.ids) - failed}, still failing {failed}")
    return 1 if failed else 0



def _pipelines(conf, deployment: Deployment):
    """The pipelines and views of forwarders.ini (``loader.Forwarding``), or None
    after saying what is wrong."""
    try:
        return loader.load_from_conf(conf, deployment, required=True)
    except loader.ForwardingConfigError as exc:
        print(f"searchlight-forward-manage: {exc}", file=sys.stderr)
        return None


def _served_by(conf, loaded) -> dict[str, str] | None:
    """View name -> the ways out that serve it (``[websocket] view``,
    ``[subscriptions] view``), or None after saying what is wrong."""
    served: dict[str, list[str]] = {}
    for way, who in ((WEBSOCKET, "websocket, search"), (SUBSCRIPTIONS, "subscriptions, feeds")):
        try:
            view = loaded.view_for(way, conf[way].view)
        except ValueError as exc:
            print(f"searchlight-forward-manage: {exc}", file=sys.stderr)
            return None
        if view is not None:
            served.setdefault(view.name, []).append(who)
    return {name: ", ".join(whos) for name, whos in served.items()}


def _explain(conf, es, deployment: Deployment, cmd) -> int:
    loaded = _pipelines(conf, deployment)
    if loaded is None:
        return 2
    served_by = _served_by(conf, loaded)
    if served_by is None:
        return 2
    pipelines, views = loaded.pipelines, list(loaded.views.values())
    if getattr(cmd, "subscription", None):
        pipelines = _subscription_pipeline(conf, es, loaded, cmd.subscription)
        if pipelines is None:
            return 1
        views = []
    received = explain.explain(
        pipelines, {p.resource_type: p.mapping for p in deployment.plugins.plugins},
        deployment.admin_only, views, served_by)
    if cmd.name == "check":
        bad = explain.leaks(received)
        for r in bad:
            what = (f"pipeline {r.name}: sink {r.sink} is tenant-facing" if r.kind == "pipeline"
                    else f"view {r.name} ({r.sink}) is read by tenants")
            print(f"{what} and would receive admin-only field(s) of {r.resource_type}: "
                  f"{', '.join(r.leaks)}")
        if bad:
            print("add the admin_only_fields filter to these pipelines (or remove the "
                  "fields with a regex_fields filter) before their sinks", file=sys.stderr)
            return 1
        print(f"ok: {len({r.name for r in received if r.kind == 'pipeline'})} pipeline(s), "
              f"{len({r.name for r in received if r.kind == 'view'})} view(s); no "
              f"tenant-facing sink or view receives an admin-only field")
        return 0
    wanted = getattr(cmd, "view", None) or cmd.pipeline
    shown = [r for r in received if (not wanted or r.name == wanted)
             and (not getattr(cmd, "view", None) or r.kind == "view")
             and (not cmd.type or r.resource_type == cmd.type)]
    if not shown:
        print("nothing matches; pipelines: "
              + ", ".join(sorted({r.name for r in received if r.kind == "pipeline"}))
              + "; views: "
              + (", ".join(sorted({r.name for r in received if r.kind == "view"})) or "none"))
        return 1
    for r in shown:
        if r.kind == "view":
            print(f"view {r.name} (served by: {r.sink}), {r.resource_type}, {r.role} copy: "
                  f"{len(r.fields)} field(s)")
        else:
            who = "tenants" if r.tenant_facing else "operator"
            print(f"{r.name} -> {r.sink} ({who}), {r.resource_type}, {r.role} copy: "
                  f"{len(r.fields)} field(s)")
        print("    " + ", ".join(r.fields))
    return 0


def _subscription_pipeline(conf, es, loaded, sub_id: str):
    """[the pipeline a delivery service makes of subscription ``sub_id``], or None."""
    try:
        view = loaded.view_for(SUBSCRIPTIONS, conf.subscriptions.view)
    except ValueError as exc:
        print(f"searchlight-forward-manage: {exc}", file=sys.stderr)
        return None
    if view is None:
        print("no view for subscriptions ([subscriptions] view = none, or forwarders.ini "
              "has no [view:...]): subscriptions are not delivered", file=sys.stderr)
        return None
    store = SubscriptionStore(es, conf.subscriptions.index)
    stored = store.get(sub_id)
    if stored is None:
        print(f"no subscription {sub_id} in {store.index}", file=sys.stderr)
        return None
    catalog = Catalog(store, view, CatalogSettings.from_conf(conf), {})
    try:
        pipeline = catalog.pipeline_for(stored.subscription)
    finally:
        catalog.close()
    pipeline.sink.close()
    return [pipeline]


def _cursors(conf, es, deployment: Deployment, cmd) -> int:
    store = CursorStore(es, conf.changelog.state_index, owner="searchlight-forward-manage")
    groups = [cmd.group] if cmd.group else deployment.group_names()
    if cmd.name == "cursors":
        subscriptions = _subscriptions(conf, es)
        for group in groups:
            docs = sorted(store.cursors(group), key=lambda d: d["consumer"])
            leases = store.leases(sorted({d["partition"] for d in docs
                                          if d.get("partition")}))
            for doc in docs:
                lease = leases.get(doc.get("partition") or "")
                for line in describe_cursor(group, doc, subscriptions,
                                            lease=lease["_source"] if lease else None):
                    print(line)
        return 0
    status = 0
    for group in groups:
        try:
            position = replay.target(es, group, cmd.to)
            before = store.move(group, cmd.pipeline, position,
                                f"moved to {cmd.to} by searchlight-forward-manage replay")
        except KeyError:
            print(f"{group}: pipeline {cmd.pipeline!r} has no cursor (is it in "
                  f"forwarders.ini, and has a delivery service run it?)", file=sys.stderr)
            status = 1
            continue
        except ValueError as exc:
            print(f"{group}: {exc}", file=sys.stderr)
            return 2
        print(f"{group} {cmd.pipeline}: moved from "
              f"{Position.from_dict(before.get('position')) or 'nowhere'} to {position}; "
              f"its owner starts the pipeline again from there within "
              f"[delivery] lease_seconds / 3, sending every change again, even those its sink had sent "
              f"(GET /status of the delivery service shows it: delivered)")
    return status


def _subscriptions(conf, es) -> dict[str, object]:
    """Pipeline name (``subscription-<id>``) -> the stored subscription, for
    ``cursors``; empty if there is no subscription index."""
    try:
        stored = SubscriptionStore(es, conf.subscriptions.index).all()
    except search.NotFoundError:
        return {}
    return {catalog_mod.pipeline_name(s.subscription.id): s.subscription for s in stored}


def describe_cursor(group: str, doc: dict, subscriptions: dict,
                    now: float | None = None, lease: dict | None = None) -> list[str]:
    """What ``cursors`` prints for one cursor document: where it is, who owns it
    now (its partition's ``lease``: an owner whose lease ran out owns nothing),
    which subscription it is, its last error and the last time an operator moved
    it."""
    now = time.time() if now is None else now
    name = doc["consumer"]
    position = Position.from_dict(doc.get("position"))
    owner = doc.get("owner")
    held_by = (lease or {}).get("owner")
    until = float((lease or {}).get("lease_until") or 0)
    if owner and held_by == owner and until > now:
        held = f"owner {owner} (lease {until - now:.0f} s left)"
    elif owner and held_by == owner:
        held = f"no owner ({owner}'s lease ran out {_ago(now - until)} ago)"
    elif owner:
        held = f"no owner ({owner} let it go)"
    else:
        held = "no owner"
    lines = [f"{group} {name}: at {position or 'no position yet'}, {held}"]
    if name.startswith(catalog_mod.PREFIX):
        sub = subscriptions.get(name)
        if sub is None:
            lines.append("    subscription: deleted (its cursor is forgotten soon)")
        else:
            state = sub.state + (f" ({sub.state_reason})" if getattr(sub, "state_reason", None)
                                 and sub.state != "active" else "")
            lines.append(f"    subscription: {sub.protocol}, project {sub.project_id}, {state}")
    if doc.get("last_error"):
        lines.append(f"    last error{_at(doc.get('last_error_at'))}: {doc['last_error']}")
    if doc.get("last_move"):
        lines.append(f"    last moved{_at(doc.get('last_move_at'))}: {doc['last_move']}")
    return lines


def _at(stamp: str | None) -> str:
    return f" at {stamp[:19].replace('T', ' ')}" if stamp else ""


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _push(conf, es, deployment: Deployment, cmd) -> int:
    """The admin copy of each resource, through the pipeline's filters, to its sink
    (what a reader of the log would send for it now)."""
    loaded = _pipelines(conf, deployment)
    if loaded is None:
        return 2
    pipelines = {p.name: p for p in loaded.pipelines}
    pipeline = pipelines.get(cmd.pipeline)
    if pipeline is None:
        view = (f" ({cmd.pipeline} is a view: WebSocket clients resume by cursor; "
                f"subscriptions: replay them)") if cmd.pipeline in loaded.views else ""
        print(f"no delivery pipeline {cmd.pipeline!r}{view}; pipelines: "
              f"{', '.join(sorted(pipelines))}", file=sys.stderr)
        return 2
    status, envelopes = 0, []
    for ref in cmd.resources:
        rtype, _, rid = ref.rpartition(":")
        group = deployment.groups.get(rtype)
        if group is None or not rid:
            print(f"{ref}: not TYPE:ID of a configured type ({', '.join(deployment.resource_types)})",
                  file=sys.stderr)
            return 2
        doc = es.options(ignore_status=404).get(index=layout.listener_alias(group),
                                                 id=documents.doc_id(rid, documents.ADMIN))
        if not doc.get("found"):
            print(f"{ref}: not in the index", file=sys.stderr)
            status = 1
            continue
        entry = Entry(doc["_index"], 0, doc["_seq_no"], doc["_source"], doc["_version"])
        try:
            prepared = pipeline.prepare(entry.envelope())
        except FilterFailed as exc:
            print(f"{ref}: a filter of {pipeline.name} failed ({exc}); not sent",
                  file=sys.stderr)
            status = 1
            continue
        if prepared is None:
            print(f"{ref}: {pipeline.name} does not select it (resource types, event "
                  f"types or priorities)", file=sys.stderr)
            continue
        envelopes.append(prepared)
    pipeline.sink.start()
    try:
        with tqdm.tqdm(total=len(envelopes), desc=f"push to {pipeline.name}",
                       unit="resource") as bar:
            for start in range(0, len(envelopes), 100):
                chunk = envelopes[start:start + 100]
                pipeline.sink.deliver(chunk)
                bar.update(len(chunk))
    except Exception as exc:  # noqa: BLE001 - tell the operator, who can run it again
        print(f"sink {pipeline.sink_name}: {exc}; run the command again once it answers",
              file=sys.stderr)
        return 1
    finally:
        pipeline.sink.close()
    print(f"{len(envelopes)} resource(s) sent to {pipeline.name} ({pipeline.sink_name})")
    return status


if __name__ == "__main__":
    main()
