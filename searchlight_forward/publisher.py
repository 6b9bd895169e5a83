"""Publish notifications the way OpenStack services do: ``oslo_messaging.Notifier``.

Used by the tests and the load generator, so what they send is what Nova or Neutron
would put on the bus: the same exchange, topic, envelope and metadata.
"""
from __future__ import annotations

import datetime
from unittest import mock

import oslo_messaging
from oslo_config import cfg
from oslo_utils import timeutils

from searchlight_forward.config import register_messaging


class NotificationPublisher:
    def __init__(self, transport_url: str):
        self.transport_url = transport_url
        self._transports: dict[str, oslo_messaging.Transport] = {}
        self._notifiers: dict[tuple[str, str, str], oslo_messaging.Notifier] = {}

    def _transport(self, exchange: str) -> oslo_messaging.Transport:
        # A service's exchange is its transport's control_exchange.
        if exchange not in self._transports:
            conf = cfg.ConfigOpts()
            register_messaging(conf)
            conf([], project="searchlight-forward-publisher")
            conf.set_override("control_exchange", exchange)
            self._transports[exchange] = oslo_messaging.get_notification_transport(
                conf, url=self.transport_url)
        return self._transports[exchange]

    def publish(self, exchange: str, topic: str, publisher_id: str, event_type: str,
                payload, priority: str = "info", ctxt: dict | None = None,
                emitted_at: str | None = None) -> None:
        """Send one notification; ``emitted_at`` replays a simulated cloud's clock.

        The Notifier stamps each message with ``timeutils.utcnow()``; a simulation
        that must be reproducible overrides that clock for the duration of the call.
        """
        key = (exchange, topic, publisher_id)
        if key not in self._notifiers:
            self._notifiers[key] = oslo_messaging.Notifier(
                self._transport(exchange), publisher_id=publisher_id,
                driver="messagingv2", topics=[topic])
        notify = getattr(self._notifiers[key], priority)
        if emitted_at is None:
            notify(ctxt or {}, event_type, payload)
            return
        stamp = datetime.datetime.fromisoformat(emitted_at)
        with mock.patch.object(timeutils, "utcnow", lambda *a, **k: stamp):
            notify(ctxt or {}, event_type, payload)

    def publish_simulated(self, sim) -> None:
        """Publish a ``simulator.SimulatedNotification`` exactly as simulated."""
        self.publish(sim.exchange, sim.topic, sim.publisher_id, sim.event_type,
                     sim.payload, priority=sim.priority, emitted_at=sim.timestamp)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.cleanup()
        self._transports.clear()
        self._notifiers.clear()
