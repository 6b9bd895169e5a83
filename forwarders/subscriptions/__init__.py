"""Subscriptions that tenants manage themselves (docs/subscriptions.md).

``model`` (pure): what a subscription is and how requests change it;
``store``: where they live (an Elasticsearch index, written with optimistic
concurrency); ``policy``: who may do what (oslo.policy); ``api``: the WSGI
application behind keystonemiddleware; ``catalog``: how the delivery service turns
each active subscription into a pipeline with its own cursor; ``confirmation``:
the request an endpoint must answer before anything else is sent to it.
"""
