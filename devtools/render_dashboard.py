"""Draw the Grafana dashboard's panels from a real Prometheus, without Grafana.

    .venv/bin/pip install -e '.[bench]'          # matplotlib
    .venv/bin/python -m devtools.render_dashboard --prometheus http://127.0.0.1:PORT \\
        --minutes 10 --scrape-interval 5s --output docs/images/dashboard.png

Reads etc/grafana/searchlight-forward.json, runs each target of each panel through
Prometheus's /api/v1/query_range over the time range (the dashboard's variables
replaced as Grafana does for "All", ``$__rate_interval`` as four scrape intervals),
and draws the panels in their gridPos layout with matplotlib: title, legend
(``legendFormat``), unit. Grafana itself cannot be run on the development machines;
the picture says it is this rendering, not Grafana's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import re
import sys
import time
import urllib.parse
import urllib.request

from devtools import grafana_dashboard

ROOT = grafana_dashboard.ROOT
GRID_COLUMNS = 24
ROW_INCHES = 0.36            # one grid unit of height (Grafana: 30 px + margin)
WIDTH_INCHES = 20.0
LEGEND_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PALETTE = ["#3274d9", "#56a64b", "#f2cc0c", "#e02f44", "#ff780a", "#a352cc",
           "#8ab8ff", "#96d98d", "#fade2a", "#ff7383", "#ffb357", "#ca95e5"]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"a duration like 5s or 1m, not {text!r}")
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def duration(value: float) -> str:
    return f"{int(value * 1000)}ms" if value < 1 else f"{int(value)}s"


def query_range(prometheus: str, expr: str, start: float, end: float,
                step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}",
                                     "end": f"{end:.3f}", "step": f"{step:g}"})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}",
                                timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body}")
    return body["data"]["result"]


def legend_name(fmt: str, labels: dict) -> str:
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return LEGEND_FIELD.sub(lambda m: labels.get(m[1], ""), fmt).strip()


def series_of(panel: dict, fetch) -> list[tuple[str, list[float], list[float]]]:
    """(legend, times, values) of every series of every target of the panel."""
    out = []
    for target in panel.get("targets", []):
        for result in fetch(target["expr"]):
            points = [(float(t), float(v)) for t, v in result["values"]]
            out.append((legend_name(target.get("legendFormat", ""), result["metric"]),
                        [t for t, _ in points], [v for _, v in points]))
    return out


def formatter(unit: str):
    """Value -> text in the panel's Grafana unit (the ones the dashboard uses)."""
    def si(value: float) -> str:
        for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= factor:
                return f"{value / factor:.3g}{suffix}"
        return f"{value:.3g}" if value else "0"

    def fmt(value: float) -> str:
        if value is None or math.isnan(value):
            return "-"
        if unit == "s":
            if value == 0:
                return "0 s"
            if abs(value) < 1:
                return f"{value * 1000:.3g} ms"
            return f"{value:.3g} s"
        if unit == "percentunit":
            return f"{value * 100:.3g}%"
        if unit == "ops":
            return f"{si(value)}/s"
        return si(value)
    return fmt


def draw(board: dict, fetch, output: pathlib.Path, start: float, end: float,
         subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 1.1                                   # inches for the title lines
    height = rows * ROW_INCHES + header
    fig = plt.figure(figsize=(WIDTH_INCHES, height), dpi=100, facecolor="#f4f5f5")
    fig.text(0.008, 1 - 0.35 / height, board["title"], fontsize=17, weight="bold",
             va="center")
    fig.text(0.008, 1 - 0.8 / height, subtitle, fontsize=10, color="#555555",
             va="center")

    def box(grid: dict, pad: float = 0.06):
        """Figure coordinates of a gridPos (left, bottom, width, height)."""
        left = grid["x"] / GRID_COLUMNS
        width = grid["w"] / GRID_COLUMNS
        top = 1 - (header + grid["y"] * ROW_INCHES) / height
        h = grid["h"] * ROW_INCHES / height
        px, py = pad / WIDTH_INCHES, pad / height
        return left + px, top - h + py, width - 2 * px, h - 2 * py

    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    clock = "%H:%M" if end - start >= 360 else "%H:%M:%S"
    for panel in panels:
        left, bottom, width, h = box(panel["gridPos"])
        if panel["type"] == "row":
            fig.text(left, bottom + h / 2, panel["title"], fontsize=13, weight="bold",
                     va="center", color="#333333")
            continue
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        fmt = formatter(unit)
        data = series_of(panel, fetch)
        frame = fig.add_axes((left, bottom, width, h), facecolor="white")
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color("#d0d3d6")
        frame.text(0.012, 1 - 0.09 * 4 / panel["gridPos"]["h"] / 2, panel["title"],
                   transform=frame.transAxes, fontsize=10.5, weight="bold", va="center")
        if panel["type"] == "stat":
            draw_stat(fig, frame, data, fmt, (left, bottom, width, h), start, end)
            continue
        ax = fig.add_axes((left + 0.042, bottom + 0.30 * h, width - 0.052, 0.58 * h))
        ax.set_facecolor("white")
        for i, (name, times, values) in enumerate(data):
            ax.plot([datetime.datetime.fromtimestamp(t) for t in times], values,
                    color=PALETTE[i % len(PALETTE)], linewidth=1.3, label=name,
                    drawstyle="steps-post" if panel_step(panel) else "default")
        ax.set_xlim(datetime.datetime.fromtimestamp(start),
                    datetime.datetime.fromtimestamp(end))
        minimum = panel.get("fieldConfig", {}).get("defaults", {}).get("min")
        if minimum is not None:
            ax.set_ylim(bottom=minimum)
            top = max([v for _, _, vs in data for v in vs if not math.isnan(v)] or [0])
            if top <= minimum:
                ax.set_ylim(minimum, minimum + 1)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, fmt=fmt: fmt(v)))
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter(clock))
        ax.tick_params(labelsize=8, colors="#444444")
        ax.grid(True, color="#e6e8ea", linewidth=0.6)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
        if not data:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center",
                    color="#888888")
        else:
            ax.legend(loc="upper left", bbox_to_anchor=(-0.01, -0.13), frameon=False,
                      fontsize=7.5, ncol=max(1, min(len(data), panel["gridPos"]["w"] // 3)),
                      handlelength=1.2, columnspacing=1.0)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, facecolor=fig.get_facecolor())
    plt.close(fig)


def panel_step(panel: dict) -> bool:
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    return custom.get("lineInterpolation") in ("stepAfter", "stepBefore")


def draw_stat(fig, frame, data, fmt, where, start, end) -> None:
    """The last value of each series, large, over a faint sparkline (graphMode area)."""
    left, bottom, width, h = where
    if not data:
        frame.text(0.5, 0.45, "No data", transform=frame.transAxes, ha="center",
                   color="#888888")
        return
    n = len(data)
    for i, (name, times, values) in enumerate(data):
        last = next((v for v in reversed(values) if not math.isnan(v)), float("nan"))
        cell = (left + width * i / n, bottom, width / n, h * 0.78)
        spark = fig.add_axes(cell)
        spark.axis("off")
        color = PALETTE[i % len(PALETTE)]
        if len(times) > 1:
            spark.fill_between(times, values, color=color, alpha=0.12, linewidth=0)
            spark.plot(times, values, color=color, alpha=0.5, linewidth=0.8)
            spark.set_xlim(start, end)
            spark.set_ylim(bottom=min(0, *[v for v in values if not math.isnan(v)] or [0]))
        spark.text(0.5, 0.55, fmt(last), transform=spark.transAxes, ha="center",
                   va="center", fontsize=22 if n <= 2 else 15, weight="bold", color=color)
        spark.text(0.5, 0.16, name if n <= 2 else name.replace(" ", "\n"),
                   transform=spark.transAxes, ha="center", va="center",
                   fontsize=8 if n <= 2 else 7, color="#444444")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:9091")
    parser.add_argument("--dashboard", type=pathlib.Path, default=grafana_dashboard.OUTPUT)
    parser.add_argument("--output", type=pathlib.Path,
                        default=ROOT / "docs" / "images" / "dashboard.png")
    parser.add_argument("--minutes", type=float, default=10,
                        help="the range: this many minutes before --end")
    parser.add_argument("--end", type=float, default=None,
                        help="end of the range, Unix seconds (default: now)")
    parser.add_argument("--scrape-interval", type=seconds, default=seconds("15s"),
                        help="Prometheus's scrape interval ($__rate_interval is four)")
    parser.add_argument("--job", default="searchlight-forward.*",
                        help="regular expression of the scrape jobs ($job)")
    parser.add_argument("--instance", default=".*", help="$instance")
    parser.add_argument("--note", default="",
                        help="what the data is, added to the picture's subtitle")
    args = parser.parse_args(argv)
    end = args.end if args.end is not None else time.time()
    start = end - args.minutes * 60
    step = max(1.0, round((end - start) / 400))
    rate_interval = duration(max(4 * args.scrape_interval, step + args.scrape_interval))
    board = json.loads(args.dashboard.read_text())
    prometheus = args.prometheus.rstrip("/")

    def fetch(expr: str) -> list[dict]:
        return query_range(prometheus, grafana_dashboard.substitute(
            expr, rate_interval, args.job, args.instance), start, end, step)
    when = datetime.datetime.fromtimestamp(end).strftime("%Y-%m-%d %H:%M")
    subtitle = (f"Rendered by devtools/render_dashboard.py (matplotlib), not by Grafana: "
                f"the dashboard's own queries on Prometheus data, {args.minutes:g} min "
                f"to {when}, $__rate_interval = {rate_interval}"
                + (f". {args.note}" if args.note else ""))
    draw(board, fetch, args.output, start, end, subtitle)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
