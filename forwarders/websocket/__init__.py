"""The WebSocket side of forwarding.

Browsers (Horizon tables) and other live consumers hold a WebSocket to a server that
runs apart from the listeners and reads the changes back from Elasticsearch:

* ``protocol`` - the sans-I/O core: one connection's state machine, what it may see;
* ``auth``     - token validation behind a pluggable seam (a demo token file today);
* ``tail``     - the live and resume source: Elasticsearch ``_seq_no`` order;
* ``doorbell`` - a RabbitMQ fanout that tells servers "something was indexed";
* ``sink``     - the listener pipelines' sink: it rings the doorbell;
* ``server``   - the asyncio server on the ``websockets`` library.

The wire protocol, with examples and close codes, is in ``docs/websocket.md``.
"""
