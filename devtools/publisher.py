"""Publish notifications the way OpenStack services do (test and demo tooling).

Used by the tests, the demo generator and the benchmark, so what they send is what
Nova or Neutron would put on the bus: the same exchange, topic, oslo.messaging 2.0
envelope and metadata. The message is built as ``oslo_messaging.Notifier`` builds
it and handed to the same driver (``messagingv2``); building it here lets a
simulation replay its own clock (``emitted_at``) without patching anyone's clock.
"""
from __future__ import annotations

import json
import urllib.parse
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


class PreEncodedPublisher:
    """A load generator's publisher: each notification encoded ahead of time exactly
    as oslo.messaging's rabbit driver encodes it (the 2.0 envelope of the message with
    its ``_unique_id``, JSON, on the service's topic exchange with the routing key
    ``<topic>.<priority>``), then sent with kombu with no broker confirm per message.

    ``NotificationPublisher`` (a real Notifier's driver) waits for a confirm on every
    message and serialises as it goes: one process tops out near 2,000/s and a fifth
    of the machine measured the publisher. This one spends its CPU before the clock
    starts (``encode``, then ``ready`` on its channel); ``send_ready`` only writes.
    Unlike the driver it declares no default queue: the listeners' pool queue must
    exist first (the bench declares it). The bytes and the message properties are the
    driver's own (tests/functional/test_publisher.py).
    """

    def __init__(self, transport_url: str, durable: bool = False):
        import kombu
        url = urllib.parse.urlsplit(transport_url)
        self._connection = kombu.Connection(url._replace(scheme="amqp").geturl())
        self._producer = kombu.Producer(self._connection.channel())
        self._durable = durable
        self._declared: set[str] = set()

    @staticmethod
    def encode(exchange: str, topic: str, publisher_id: str, event_type: str, payload,
               priority: str = "info", emitted_at: str | None = None,
               message_id: str | None = None) -> tuple[str, str, bytes]:
        """(exchange, routing key, body) of one notification, as the driver sends it."""
        message = {"message_id": message_id or str(uuid.uuid4()),
                   "publisher_id": publisher_id, "event_type": event_type,
                   "priority": priority.upper(), "payload": payload,
                   "timestamp": emitted_at or str(timeutils.utcnow()),
                   "_unique_id": uuid.uuid4().hex}
        envelope = {"oslo.version": "2.0", "oslo.message": json.dumps(message)}
        return exchange, f"{topic}.{priority.lower()}", json.dumps(envelope).encode()

    @classmethod
    def encode_simulated(cls, sim) -> tuple[str, str, bytes]:
        return cls.encode(sim.exchange, sim.topic, sim.publisher_id, sim.event_type,
                          sim.payload, priority=sim.priority, emitted_at=sim.timestamp,
                          message_id=sim.message_id)

    def ready(self, encoded: tuple[str, str, bytes]) -> tuple[str, str, object]:
        """(exchange, routing key, AMQP message) of an encoded notification, built on
        this publisher's channel with the properties kombu's ``Producer.publish``
        gives it (priority 0, no headers, persistent delivery mode), so that
        ``send_ready`` only writes it: ready them all before the clock starts."""
        exchange, routing_key, body = encoded
        message = self._producer.channel.prepare_message(
            body, 0, "application/json", "utf-8", {}, {"delivery_mode": 2})
        return exchange, routing_key, message

    def send(self, encoded: tuple[str, str, bytes]) -> None:
        self.send_ready(self.ready(encoded))

    def send_ready(self, ready: tuple[str, str, object]) -> None:
        import kombu
        exchange, routing_key, message = ready
        channel = self._producer.channel
        if exchange not in self._declared:     # as the driver declares it
            kombu.Exchange(exchange, type="topic", durable=self._durable,
                           auto_delete=False)(channel).declare()
            self._declared.add(exchange)
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key)

    def close(self) -> None:
        self._connection.release()
