"""Metric families from counters: known counters and label values are there at 0."""
from searchlight_forward import metrics


def samples(families) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


def test_known_counters_of_every_row_are_exported_at_zero():
    rows = [({"pipeline": "ops"}, {"delivered": 3}), ({"pipeline": "audit"}, {})]
    got = samples(metrics.labelled_counters("delivery_pipeline", rows, "pipeline counter",
                                            known=("delivered", "failures")))
    assert got == {
        ("searchlight_forward_delivery_pipeline_delivered_total", (("pipeline", "ops"),)): 3,
        ("searchlight_forward_delivery_pipeline_delivered_total", (("pipeline", "audit"),)): 0,
        ("searchlight_forward_delivery_pipeline_failures_total", (("pipeline", "ops"),)): 0,
        ("searchlight_forward_delivery_pipeline_failures_total", (("pipeline", "audit"),)): 0}


def test_a_label_has_every_known_value_and_what_was_counted():
    family = metrics.by_label("websocket", "closes", "closes by code", "code",
                              {4008: 2, 1000: 1}, known=(4001, 4008))
    assert samples([family]) == {
        ("searchlight_forward_websocket_closes_total", (("code", "1000"),)): 1,
        ("searchlight_forward_websocket_closes_total", (("code", "4001"),)): 0,
        ("searchlight_forward_websocket_closes_total", (("code", "4008"),)): 2}
    gauge = metrics.labelled_gauge("websocket", "by_state", "by state", "state",
                                   {"live": 4}, known=("live", "resuming"))
    assert samples([gauge]) == {
        ("searchlight_forward_websocket_by_state", (("state", "live"),)): 4,
        ("searchlight_forward_websocket_by_state", (("state", "resuming"),)): 0}
