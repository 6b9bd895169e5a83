"""The Grafana dashboard of searchlight-forward, built with grafana-foundation-sdk.

    .venv/bin/python -m devtools.grafana_dashboard > etc/grafana/searchlight-forward.json
    .venv/bin/python -m devtools.grafana_dashboard --write     # the same

The committed JSON is this module's output (tests/unit/test_grafana_dashboard.py
compares them), and every query of every panel is evaluated on a real Prometheus
scraping a real listener, delivery service and WebSocket server
(tests/functional/test_grafana_dashboard.py). Only metric names the processes export
(docs/operations.md, "Status and metrics") are used.

Variables: ``datasource`` (any Prometheus), ``job`` (scrape jobs named
``searchlight-forward*``, docs/operations.md, "Dashboard") and ``instance``. Rates
use ``$__rate_interval``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "etc" / "grafana" / "searchlight-forward.json"

UID = "searchlight-forward"
TITLE = "searchlight-forward"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every series of the dashboard is selected by the two variables.
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "[$__rate_interval]"
P = "searchlight_forward_"


def query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
            .datasource(DATASOURCE).range())


def rate(metric: str, by: str = "") -> str:
    """Per-second rate summed over the selected processes (``by`` labels kept)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({P}{metric}{{{SEL}}}{RATE}))"


def quantile(q: float, histogram: str) -> str:
    return (f"histogram_quantile({q}, sum by (le) "
            f"(rate({P}{histogram}_bucket{{{SEL}}}{RATE})))")


def legend() -> common_builder.VizLegendOptions:
    return (common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM).show_legend(True))


def graph(title: str, description: str, unit: str, width: int, height: int,
          targets: list[prometheus.Dataquery], *, minimum: float | None = 0,
          step: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description)
             .datasource(DATASOURCE).unit(unit).span(width).height(height)
             .legend(legend()).line_width(1).fill_opacity(10)
             .targets(targets))
    if minimum is not None:
        panel = panel.min(minimum)
    if step:
        panel = panel.line_interpolation(common.LineInterpolation.STEP_AFTER)
    return panel


def big_number(title: str, description: str, unit: str, width: int,
               targets: list[prometheus.Dataquery]) -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
            .unit(unit).span(width).height(4)
            .graph_mode(common.BigValueGraphMode.AREA)
            .color_mode(common.BigValueColorMode.VALUE)
            .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
            .targets(targets))


def variables() -> list:
    all_option = model.VariableOption(selected=True, text="All", value="$__all")
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("job").label("Job").datasource(DATASOURCE)
        .query("label_values(up, job)").regex("/searchlight-forward.*/")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).current(all_option),
        db.QueryVariable("instance").label("Instance").datasource(DATASOURCE)
        .query('label_values(up{job=~"$job"}, instance)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).current(all_option),
    ]


def overview(d: db.Dashboard) -> db.Dashboard:
    return (d.with_row(db.Row("Overview"))
            .with_panel(big_number(
                "Processes up", "Prometheus's own `up` of each scraped process (1: its "
                "/metrics answered the last scrape).", "none", 6,
                [query(f"up{{{SEL}}}", "{{job}} {{instance}}", "A")]))
            .with_panel(big_number(
                "Notifications consumed", "Notifications the listeners took from "
                "RabbitMQ, per second.", "ops", 6,
                [query(rate("listener_notifications_total"), "consumed", "A")]))
            .with_panel(big_number(
                "Pipelines live", "Pipelines reading the shared feed (live) out of those "
                "owned by the delivery processes; a pipeline catching up is not live.",
                "none", 6,
                [query(f"sum ({P}delivery_pipeline_live{{{SEL}}})", "live", "A"),
                 query(f"count ({P}delivery_pipeline_live{{{SEL}}})", "owned", "B")]))
            .with_panel(big_number(
                "WebSocket connections", "Open WebSocket connections, all servers.",
                "none", 6,
                [query(f"sum ({P}websocket_open_connections{{{SEL}}})", "open", "A")])))


def listener(d: db.Dashboard) -> db.Dashboard:
    outcomes = [query(rate("listener_notifications_total"), "consumed", "A")]
    for ref, (counter, name) in zip("BCDE", [("applied", "applied"), ("stale", "stale"),
                                              ("duplicate", "duplicate"),
                                              ("dead_lettered", "dead-lettered")]):
        outcomes.append(query(rate(f"listener_{counter}_total"), name, ref))
    return (d.with_row(db.Row("Listener"))
            .with_panel(graph(
                "Notifications by outcome", "Per second: consumed from RabbitMQ; "
                "applied (changed the index), stale (older than what is indexed), "
                "duplicate (a redelivery), dead-lettered (can never be indexed).",
                "ops", 8, 8, outcomes))
            .with_panel(graph(
                "Batch latency", "Time to process one batch (plugins, Elasticsearch "
                "reads and writes, dead letters), then from its write to the doorbell "
                "ring that made it visible to readers (the announcer's pause and "
                "refresh), from the histograms.", "s", 8, 8,
                [query(quantile(0.5, "listener_batch_seconds"), "batch p50", "A"),
                 query(quantile(0.99, "listener_batch_seconds"), "batch p99", "B"),
                 query(quantile(0.5, "listener_visible_seconds"), "to visible p50", "C"),
                 query(quantile(0.99, "listener_visible_seconds"), "to visible p99",
                       "D")]))
            .with_panel(graph(
                "Dead letters by stage", "Dead-letter records written per second, by "
                "stage (parse, plugin, index, batch, dispatch, rejected; "
                "docs/reliability.md).", "ops", 8, 8,
                [query(rate("listener_dead_letters_total", "stage"), "{{stage}}", "A")])))


def delivery(d: db.Dashboard) -> db.Dashboard:
    by = "group, pipeline"
    name = "{{pipeline}} ({{group}})"
    return (d.with_row(db.Row("Delivery"))
            .with_panel(graph(
                "Delivered per pipeline", "Changes each pipeline's sink took, per "
                "second.", "ops", 12, 8,
                [query(rate("delivery_pipeline_delivered_total", by), name, "A")]))
            .with_panel(graph(
                "Sink failures per pipeline", "Failed sink calls per second (each "
                "retry counts); a `hold` pipeline fails until its sink returns.",
                "ops", 12, 8,
                [query(rate("delivery_pipeline_failures_total", by), name, "A")]))
            .with_panel(graph(
                "Lag (positions)", "Writes in the change log (all shards, both role "
                "copies) each pipeline has not read yet.", "short", 8, 8,
                [query(f"max by ({by}) ({P}delivery_pipeline_lag_positions{{{SEL}}})",
                       name, "A")]))
            .with_panel(graph(
                "Seconds since progress", "Seconds since each pipeline last moved or "
                "had nothing pending; readiness fails past [delivery] stall_seconds.",
                "s", 8, 8,
                [query(f"max by ({by}) "
                       f"({P}delivery_pipeline_seconds_since_progress{{{SEL}}})",
                       name, "A")]))
            .with_panel(graph(
                "Pipeline live", "1 while a pipeline reads the shared feed, 0 while it "
                "catches up from the index.", "none", 8, 8,
                [query(f"max by ({by}) ({P}delivery_pipeline_live{{{SEL}}})", name, "A")],
                step=True)))


def websocket(d: db.Dashboard) -> db.Dashboard:
    hits, misses = rate("websocket_validator_hits_total"), \
        rate("websocket_validator_misses_total")
    return (d.with_row(db.Row("WebSocket"))
            .with_panel(graph(
                "Open connections by state", "Open WebSocket connections by protocol "
                "state, all servers.", "none", 6, 8,
                [query(f"sum by (state) ({P}websocket_open_connections_by_state{{{SEL}}})",
                       "{{state}}", "A")], step=True))
            .with_panel(graph(
                "Closes by code", "Connections the server closed per second, by close "
                "code (docs/websocket.md).", "ops", 6, 8,
                [query(rate("websocket_closes_total", "code"), "{{code}}", "A")]))
            .with_panel(graph(
                "Keystone validation latency", "Time Keystone took to answer a token "
                "validation (cache misses and re-checks; [websocket] auth = keystone).",
                "s", 6, 8,
                [query(quantile(0.5, "websocket_keystone_validation_seconds"), "p50", "A"),
                 query(quantile(0.99, "websocket_keystone_validation_seconds"), "p99",
                       "B")]))
            .with_panel(graph(
                "Token cache hit ratio", "Share of token validations answered by the "
                "cache ([websocket] auth = keystone).", "percentunit", 6, 8,
                [query(f"{hits} / ({hits} + {misses})", "hit ratio", "A")])))


def build() -> model.Dashboard:
    d = (db.Dashboard(TITLE).uid(UID)
         .description("Listener, delivery service and WebSocket server of "
                      "searchlight-forward (generated by devtools/grafana_dashboard.py)")
         .tags(["searchlight-forward", "openstack"])
         .editable().tooltip(model.DashboardCursorSync.CROSSHAIR)
         .refresh("30s").time("now-1h", "now").timezone("browser")
         .variables(variables()))
    for section in (overview, listener, delivery, websocket):
        d = section(d)
    built = d.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number              # stable ids (Grafana would pick its own)
    return built


def substitute(expr: str, rate_interval: str, job: str = "searchlight-forward.*",
               instance: str = ".*") -> str:
    """A target's expression with the dashboard's variables replaced as Grafana does
    for "All" (``$name`` and ``${name}``): for the functional test and the renderer,
    which query Prometheus without Grafana."""
    values = {"__rate_interval": rate_interval, "job": job, "instance": instance}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name,
                                                                     values[name])
    if "$" in expr:
        raise ValueError(f"a variable is left in {expr!r}")
    return expr


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help=f"write {OUTPUT.relative_to(ROOT)} instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
