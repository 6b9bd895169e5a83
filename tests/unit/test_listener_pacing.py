"""The batch poll's timeout follows the cost of a batch (searchlight_forward/listener/pacing.py)."""
import pytest

from searchlight_forward.listener.pacing import BatchPacer, batch_window


@pytest.mark.parametrize("processing, expected", [
    (0.001, 0.02),      # quick batches: the shortest wait
    (0.03, 0.06),       # twice what a batch takes
    (0.5, 0.2),         # slow batches: never more than the longest
])
def test_the_window_is_twice_the_processing_time_within_bounds(processing, expected):
    assert batch_window(processing, 0.02, 0.2) == pytest.approx(expected)


def test_the_pacer_starts_short_follows_a_smoothed_cost_and_applies_only_changes():
    applied = []
    pacer = BatchPacer(0.02, 0.2, applied.append)
    assert pacer.window == 0.02 and applied == []   # the poll's first timeout
    pacer.observe(0.005)            # mean 0.005: 0.01, below the shortest
    assert applied == []
    pacer.observe(0.05)             # mean 0.005 + 0.2 * 0.045 = 0.014 -> 0.028
    assert applied == [pytest.approx(0.028)]
    pacer.observe(1.0)              # mean 0.014 + 0.2 * 0.986 = 0.2112 -> 0.2 at most
    assert applied[-1] == pytest.approx(0.2) and pacer.window == pytest.approx(0.2)
    for _ in range(40):             # quick again: back down to the shortest
        pacer.observe(0.001)
    assert applied[-1] == pytest.approx(0.02) and len(applied) < 40


def test_a_shortest_above_the_longest_is_a_fixed_wait():
    applied = []
    pacer = BatchPacer(0.5, 0.2, applied.append)
    pacer.observe(0.001)
    pacer.observe(10.0)
    assert pacer.window == 0.2 and applied == []
