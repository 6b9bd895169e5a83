"""The committed Grafana dashboard is the generator's output, and well formed.

(Its queries are evaluated on a real Prometheus by
tests/functional/test_grafana_dashboard.py.)"""
from __future__ import annotations

import itertools
import json

import pytest

from devtools import grafana_dashboard


def committed() -> dict:
    return json.loads(grafana_dashboard.OUTPUT.read_text())


def panels() -> list[dict]:
    return [p for p in committed()["panels"] if p["type"] != "row"]


def test_committed_json_is_what_the_generator_produces():
    assert grafana_dashboard.OUTPUT.read_text() == grafana_dashboard.render(), (
        "etc/grafana/searchlight-forward.json differs from devtools/grafana_dashboard.py; "
        "regenerate it: .venv/bin/python -m devtools.grafana_dashboard --write")


def test_every_panel_has_a_datasource_and_a_query():
    assert len(panels()) >= 15
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_variables_and_rate_intervals():
    names = [v["name"] for v in committed()["templating"]["list"]]
    assert names == ["datasource", "job", "instance"]
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'job=~"$job", instance=~"$instance"' in expr, expr
            if "rate(" in expr:
                assert "[$__rate_interval]" in expr, expr


def test_panels_do_not_overlap_and_fit_the_grid():
    every = committed()["panels"]
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    for panel in every:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
    for a, b in itertools.combinations(every, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        apart = (ga["x"] + ga["w"] <= gb["x"] or gb["x"] + gb["w"] <= ga["x"]
                 or ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"])
        assert apart, f"{a['title']} overlaps {b['title']}"


def test_substitute_replaces_grafana_variables_as_for_all():
    expr = 'rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])'
    assert grafana_dashboard.substitute(expr, "4s") == \
        'rate(x{job=~"searchlight-forward.*", instance=~".*"}[4s])'
    with pytest.raises(ValueError):
        grafana_dashboard.substitute("rate(x[$__range])", "4s")
