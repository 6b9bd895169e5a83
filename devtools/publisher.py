"""Publish notifications the way OpenStack services do (test and demo tooling).

Used by the tests, the demo generator and the benchmark, so what they send is what
Nova or Neutron would put on the bus: the same exchange, topic, oslo.messaging 2.0
envelope and metadata. The message is built as ``oslo_messaging.Notifier`` builds
it and handed to the same driver (``messagingv2``); building it here lets a
simulation replay its own clock (``emitted_at``) without patching anyone's clock.
"""
from __future__ import annotations

import uuid

import oslo_messaging
from oslo_config import cfg
from oslo_messaging.notify import messaging as notify_messaging
from oslo_utils import timeutils

from searchlight_forward.listener.opts import register_messaging


class NotificationPublisher:
    def __init__(self, transport_url: str, conf: cfg.ConfigOpts | None = None):
        self.transport_url = transport_url
        self._base_conf = conf
        self._transports: dict[str, oslo_messaging.Transport] = {}
        self._drivers: dict[tuple[str, str], notify_messaging.MessagingV2Driver] = {}

    def _transport(self, exchange: str) -> oslo_messaging.Transport:
        # A service's exchange is its transport's control_exchange.
        if exchange not in self._transports:
            conf = cfg.ConfigOpts()
            register_messaging(conf)
            conf([], project="searchlight-forward-publisher")
            if self._base_conf is not None:
                # Producers and consumers must agree on queue durability and type.
                for name in ("amqp_durable_queues", "rabbit_quorum_queue"):
                    conf.set_override(name, self._base_conf.oslo_messaging_rabbit[name],
                                      group="oslo_messaging_rabbit")
            conf.set_override("control_exchange", exchange)
            self._transports[exchange] = oslo_messaging.get_notification_transport(
                conf, url=self.transport_url)
        return self._transports[exchange]

    def _driver(self, exchange: str, topic: str) -> notify_messaging.MessagingV2Driver:
        key = (exchange, topic)
        if key not in self._drivers:
            transport = self._transport(exchange)
            self._drivers[key] = notify_messaging.MessagingV2Driver(
                transport.conf, topics=[topic], transport=transport)
        return self._drivers[key]

    def publish(self, exchange: str, topic: str, publisher_id: str, event_type: str,
                payload, priority: str = "info", ctxt: dict | None = None,
                emitted_at: str | None = None, message_id: str | None = None) -> None:
        """Send one notification; ``emitted_at`` replays a simulated cloud's clock."""
        message = {"message_id": message_id or str(uuid.uuid4()),
                   "publisher_id": publisher_id, "event_type": event_type,
                   "priority": priority.upper(), "payload": payload,
                   "timestamp": emitted_at or str(timeutils.utcnow())}
        self._driver(exchange, topic).notify(ctxt or {}, message, priority, None)

    def publish_message(self, exchange: str, topic: str, message: dict,
                        routing_priority: str = "info") -> None:
        """Send a message dict as it is (a malformed one, for tests), in an oslo
        envelope, with the routing key of ``routing_priority``."""
        self._driver(exchange, topic).notify({}, message, routing_priority, None)

    def publish_simulated(self, sim) -> None:
        """Publish a ``devtools.simulator.SimulatedNotification`` exactly as simulated."""
        self.publish(sim.exchange, sim.topic, sim.publisher_id, sim.event_type,
                     sim.payload, priority=sim.priority, emitted_at=sim.timestamp,
                     message_id=sim.message_id)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.cleanup()
        self._transports.clear()
        self._drivers.clear()
