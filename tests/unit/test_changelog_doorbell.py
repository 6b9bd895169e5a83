"""Doorbell rings and RabbitMQ URLs (pure)."""
import pytest

from searchlight_forward.changelog.doorbell import Ring, kombu_url


def test_ring_round_trip_and_junk_is_ignored():
    ring = Ring("searchlight", "searchlight-1", (4, -1, 7))
    assert Ring.from_body(ring.to_body()) == ring
    for junk in (None, "ring", [], {"group": "g"}, {"group": "g", "index": "i",
                                                     "checkpoints": []},
                 {"group": "g", "index": "i", "checkpoints": ["1"]},
                 {"group": "g", "index": "i", "checkpoints": [True]}):
        assert Ring.from_body(junk) is None


@pytest.mark.parametrize("url, expected", [
    ("rabbit://guest:guest@127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:5672//"),
    ("rabbit://u:p@h1:5672,u:p@h2:5672/prod",
     "amqp://u:p@h1:5672/prod;amqp://u:p@h2:5672/prod"),
    ("rabbit://u:p%40ss@h1:5672/a%2Fb", "amqp://u:p%40ss@h1:5672/a%2Fb"),
])
def test_kombu_url_agrees_with_oslo_messaging_on_every_host(url, expected):
    assert kombu_url(url) == expected
