"""The doorbell listener under continuous rings, on the real RabbitMQ with a short
heartbeat: the broker must never drop its connection for missed heartbeats (the
client sends them on a clock, whether rings keep arriving or not)."""
from __future__ import annotations

import threading
import time

from searchlight_forward.changelog.doorbell import Doorbell, DoorbellListener, Ring
from tests.functional.conftest import wait_for

HEARTBEAT = 2          # seconds; RabbitMQ closes a connection silent for two of them
DURATION = 12.0        # six heartbeat intervals of continuous rings
EVERY = 0.05           # a ring every 50 ms: drain_events never times out


def test_continuous_rings_keep_the_doorbell_connection(broker, names):
    group = names["group"]
    heard = []
    listener = DoorbellListener(broker, [group], lambda ring: heard.append(ring),
                                heartbeat=HEARTBEAT)
    doorbell = Doorbell(broker)
    try:
        assert listener.start(wait=10.0), "the doorbell listener did not connect"
        stop = threading.Event()
        rung = 0

        def ring_continuously():
            nonlocal rung
            deadline = time.monotonic() + DURATION
            while time.monotonic() < deadline and not stop.is_set():
                doorbell.ring(Ring(group, f"{group}-1", (rung,)))
                rung += 1
                stop.wait(EVERY)

        ringer = threading.Thread(target=ring_continuously, daemon=True)
        ringer.start()
        ringer.join(DURATION + 10)
        stop.set()
        assert not ringer.is_alive()
        wait_for(lambda: sum(r is not None for r in heard) >= rung, 10,
                 f"all {rung} rings to be heard")
        assert rung >= DURATION / EVERY / 2
        # One connection all along: never dropped, never reconnected.
        assert listener.connections == 1 and listener.connected, listener.stats()
        assert heard.count(None) == 1              # on_ring(None): the one (re)connection
    finally:
        doorbell.close()
        listener.stop()
