"""The index read as a change log.

Every write to an Elasticsearch shard gets the next ``_seq_no`` of that shard, so a
shard's ``_seq_no`` order is the order of its writes, whichever listener process made
them; a resource's documents always live in the same shard, and external versions
make each resource's versions only go up in that order. Reading every shard in
``_seq_no`` order from a position is therefore reading the resources' changes in an
order that never shows an older version of a resource after a newer one, with the
intermediate states a rewrite replaced already coalesced away.

* ``position``: where a reader is (per shard), as text for cursors;
* ``entry``: one stored role copy as read at its ``_seq_no``;
* ``reader``: the reads (head of the log, pages of entries between two positions);
* ``announcer``: the writer's side: make written changes visible, ring the doorbell;
* ``doorbell``: the ring (RabbitMQ fanout) and its listener;
* ``feed``: a follower that turns rings (or polls) into pages, for any consumer;
* ``follower``: sans I/O, a reader's way from its cursor to the live stream (catch
  up, full resync, hold or join, go live), driven by the delivery consumer and the
  WebSocket server alike;
* ``tombstones``: deleted resources' tombstones, their retention and the horizon.
"""
