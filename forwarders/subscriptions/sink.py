"""The ``subscriptions`` sink: it marks the pipeline whose filters every subscription
passes through (as ``websocket`` marks the WebSocket server's)::

    [pipeline:subscriptions]
    pipeline = unsearchable secrets subscriptions

    [sink:subscriptions]
    use = egg:searchlight-forward#subscriptions

The delivery service makes one pipeline of it per active subscription: these
filters, the subscription's own selection, its creator's role copy and project,
and a webhook or e-mail sink. Their settings are options of ``[subscriptions]``
and ``[smtp]`` in the main configuration, their one source of truth.
"""
from __future__ import annotations

from forwarders.sinks.base import POLICY_OPTIONS, Sink, SinkConfigError


class SubscriptionsSink(Sink):
    serves_subscriptions = True

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        own = sorted(set(self.options) - POLICY_OPTIONS)
        if own:
            raise SinkConfigError(own[0], "subscriptions' settings are options of "
                                  "[subscriptions] and [smtp] in the main configuration")

    def deliver(self, envelopes) -> None:
        raise RuntimeError("the subscriptions pipeline is a template; the delivery "
                           "service delivers one copy per subscription")
