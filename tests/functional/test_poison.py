"""No notification stops the stream (real RabbitMQ and Elasticsearch).

Content that cannot be indexed is found by bisection and dead-lettered with its
reason while the rest of its batch is indexed; a priority oslo.messaging would drop
is dead-lettered; what oslo.messaging cannot read reaches the dead letters through
the rejected queue; a document Elasticsearch keeps answering 503 for, while it takes
the others, is dead-lettered after ``max_item_attempts``; a message whose batch keeps
failing is dead-lettered after ``max_batch_failures``. In every case each message is
handled once more at most, never requeued for ever.
"""
from __future__ import annotations

import json
import uuid

import kombu

from tests.conftest import AMQP_URL, rabbitmqctl
from tests.functional.conftest import index_with_unstarted_shard, wait_for
from tests.functional.test_dead_letters import image_payload


def image_id() -> str:
    return str(uuid.uuid4())


def publish_image(publisher, payload) -> None:
    publisher.publish("glance", "notifications", "image.localhost", "image.update",
                      payload)


def dead_letters(es, index) -> dict[str, dict]:
    """Dead-letter records by the id of the image they were about (or message id)."""
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000)["hits"]["hits"]
    out = {}
    for hit in hits:
        record = hit["_source"]
        out[record["message_id"]] = record
    return out


def admin_copy(es, group, resource_id) -> dict | None:
    found = es.options(ignore_status=404).get(index=f"{group}-listener",
                                              id=f"{resource_id}_ADMIN")
    return found["_source"] if found.get("found") else None


def set_options(config_file, section: str, lines: str) -> None:
    """Set options at the top of ``section``, dropping any later line for the same
    option (oslo.config takes the last one)."""
    text = config_file.read_text()
    assert f"[{section}]\n" in text
    names = {line.split("=")[0].strip() for line in lines.splitlines()}
    head, rest = text.split(f"[{section}]\n", 1)
    body, sep, tail = rest.partition("\n[")
    kept = [line for line in body.splitlines()
            if line.split("=")[0].strip() not in names]
    config_file.write_text(f"{head}[{section}]\n{lines}\n" + "\n".join(kept)
                           + ("\n" if kept else "") + sep + tail)


def wait_processed(listener, count: int) -> None:
    wait_for(lambda: listener.processor.counters["notifications"] >= count, 60,
             f"the listener to take {count} notifications")


def test_content_that_cannot_be_indexed_is_isolated_and_the_rest_indexed(
        start_listener, publisher, es, names):
    listener = start_listener()
    deep: dict = {}
    node = deep
    for _ in range(300):               # the JSON encoder of the client stops at 255
        node["a"] = {}
        node = node["a"]
    poison = {                        # image id -> what the reason must say
        image_id(): ({"name": "bad \ud800 surrogate"}, "cannot be indexed"),
        image_id(): ({"properties": {"deep": deep}}, "cannot be indexed"),
        # (out of range for its mapping: refused before it is written)
        image_id(): ({"size": 2 ** 70}, "out of range for an integer (long)"),
        image_id(): ({"name": "x" * 40000}, "Elasticsearch refused"),
    }
    good = [image_id() for _ in range(30)]
    message_ids = {}
    order = good[:10] + list(poison)[:2] + good[10:20] + list(poison)[2:] + good[20:]
    for rid in order:
        overrides = poison[rid][0] if rid in poison else {}
        message_ids[rid] = str(uuid.uuid4())
        publisher.publish("glance", "notifications", "image.localhost", "image.update",
                          image_payload(image_id=rid, **overrides),
                          message_id=message_ids[rid])
    wait_processed(listener, len(order))

    records = dead_letters(es, names["dead_letters"])
    assert set(records) == {message_ids[rid] for rid in poison}
    for rid, (_, says) in poison.items():
        record = records[message_ids[rid]]
        stage = "plugin" if "out of range" in says else "index"
        assert record["stage"] == stage and says in record["reason"], record["reason"]
        assert admin_copy(es, names["group"], rid) is None
    assert all(admin_copy(es, names["group"], rid) for rid in good)
    # Each notification was handled once: no batch went back to RabbitMQ.
    assert listener.processor.counters["notifications"] == len(order)
    assert listener.processor.counters["isolated"] == 2


def test_a_priority_oslo_messaging_would_drop_is_dead_lettered(
        start_listener, publisher, es, names):
    listener = start_listener()
    good = image_id()
    bad = {None: str(uuid.uuid4()), "bogus": str(uuid.uuid4()), "": str(uuid.uuid4()),
           5: str(uuid.uuid4())}
    for priority, message_id in bad.items():
        publisher.publish_message("glance", "notifications", {
            "message_id": message_id, "publisher_id": "image.localhost",
            "event_type": "image.update", "priority": priority,
            "payload": image_payload(image_id=image_id()), "timestamp": "2026-11-21"})
    publish_image(publisher, image_payload(image_id=good))

    wait_for(lambda: admin_copy(es, names["group"], good), 30, "the good one to be indexed")
    wait_for(lambda: len(dead_letters(es, names["dead_letters"])) >= len(bad), 30,
             "the bad priorities to be dead-lettered")
    records = dead_letters(es, names["dead_letters"])
    assert set(records) == set(bad.values())
    for priority, message_id in bad.items():
        assert records[message_id]["stage"] == "dispatch"
        assert repr(priority) in records[message_id]["reason"]
    assert listener.processor.counters["bad_priority"] == len(bad)


def test_a_document_elasticsearch_keeps_answering_503_is_dead_lettered_after_attempts(
        config_file, start_listener, publisher, es, names):
    # A real per-document 5xx: a two-shard index whose second shard cannot start on
    # this one-node cluster. Writes to it are answered 503 after write_timeout while
    # the other shard takes its documents.
    with index_with_unstarted_shard(es, names["group"], 2) as index:
        set_options(config_file, "listener", "max_item_attempts = 2")
        set_options(config_file, "elasticsearch", "write_timeout = 0.5")
        # The oracle: Elasticsearch's own routing of each copy's id. Six ids with a
        # copy on the shard that cannot start and six without (random ids alone were
        # all on it one run in thirty: 0.75 ** 12).
        routed: dict[bool, list[str]] = {True: [], False: []}
        for _ in range(500):
            rid = image_id()
            refused = not all(_started(es, index, f"{rid}_{role}")
                              for role in ("ADMIN", "USER"))
            if len(routed[refused]) < 6:
                routed[refused].append(rid)
            if all(len(found) == 6 for found in routed.values()):
                break
        assert all(len(found) == 6 for found in routed.values()), routed
        ids = routed[True] + routed[False]
        unassigned = set(routed[True])
        start_listener()
        message_ids = {}
        for rid in ids:
            message_ids[rid] = str(uuid.uuid4())
            publisher.publish("glance", "notifications", "image.localhost",
                              "image.update", image_payload(image_id=rid),
                              message_id=message_ids[rid])
        # The stream goes on (one image updated again and again, on the started
        # shard): Elasticsearch takes documents while it refuses the others.
        steady = next(rid for rid in ids if rid not in unassigned)
        second = 10

        def refused_ones_dead_lettered():
            nonlocal second
            second += 1
            publish_image(publisher, image_payload(
                image_id=steady, updated_at=f"2026-11-21T10:00:{second:02d}Z"))
            return len(dead_letters(es, names["dead_letters"])) >= len(unassigned)
        wait_for(refused_ones_dead_lettered, 45, "the refused documents' dead letters",
                 interval=0.5)
        records = dead_letters(es, names["dead_letters"])
        assert set(records) == {message_ids[rid] for rid in unassigned}, [
            (r["event_type"], r["reason"][:200], r["notification"][:300]) for k, r in records.items()
            if k not in {message_ids[rid] for rid in unassigned}]
        # Refused at the write (503 unavailable_shards) or already at the read
        # (no_shard_available), whichever Elasticsearch answered first.
        assert all(("503 unavailable_shards" in r["reason"]
                    or "no_shard_available" in r["reason"]) and "2 times" in r["reason"]
                   for r in records.values()), [r["reason"] for r in records.values()]
        assert all(admin_copy(es, names["group"], rid) for rid in set(ids) - unassigned)


def _started(es, index: str, doc_id: str) -> bool:
    """Whether the shard Elasticsearch routes ``doc_id`` to has started."""
    (copies,) = es.search_shards(index=index, routing=doc_id)["shards"]
    return any(c["state"] == "STARTED" and c["primary"] for c in copies)


def test_a_message_whose_batch_keeps_failing_is_dead_lettered_after_n_failures(
        config_file, start_listener, publisher, es, names):
    set_options(config_file, "listener", "max_batch_failures = 3")
    listener = start_listener()
    # The dead-letter index refuses writes (403, not transient): a batch holding an
    # unreadable notification fails each time it comes back.
    es.indices.put_settings(index=names["dead_letters"],
                            settings={"index.blocks.write": True})
    message_id = str(uuid.uuid4())
    publisher.publish("glance", "notifications", "image.localhost", "image.update",
                      "this is not json {", message_id=message_id)
    wait_for(lambda: listener.processor.counters["failed_batches"] >= 3, 60,
             "the batch to fail three times")
    es.indices.put_settings(index=names["dead_letters"],
                            settings={"index.blocks.write": False})
    wait_for(lambda: dead_letters(es, names["dead_letters"]), 30, "the dead letter")
    record = dead_letters(es, names["dead_letters"])[message_id]
    assert record["stage"] == "batch"
    assert "failed 3 times" in record["reason"] and "cluster_block" in record["reason"]


def test_what_oslo_messaging_cannot_read_is_dead_lettered_through_the_rejected_queue(
        config_file, start_listener, publisher, es, names, vhost):
    # The operator's policy (docs/reliability.md): the pool queue dead-letters to
    # the listener's rejected queue.
    rejected = f"{names['pool']}.rejected"
    set_options(config_file, "listener", f"rejected_queue = {rejected}")
    policy = f"{names['pool']}-rejected"
    rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", policy,
                f"^{names['pool']}$", json.dumps({"dead-letter-exchange": rejected}))
    try:
        listener = start_listener()
        wait_for(lambda: listener.rejected.stats()["connected"], 30, "the rejected queue")
        good = image_id()
        envelope = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps({
            "message_id": str(uuid.uuid4()), "publisher_id": "image.localhost",
            "event_type": "image.update", "priority": "INFO",
            "payload": image_payload(image_id=image_id()), "timestamp": "2026-11-21"})})
        raw = [("this is not json {", "application/json"),
               (envelope, "text/plain"),                  # a good envelope, wrong type
               (b"\xff\xfe\x00binary", "application/octet-stream")]
        with kombu.Connection(AMQP_URL.rsplit("/", 1)[0] + "/" + vhost) as conn:
            producer = conn.Producer()
            for body, content_type in raw:
                producer.publish(body, exchange="glance", routing_key="notifications.info",
                                 content_type=content_type, content_encoding="utf-8"
                                 if isinstance(body, str) else "binary")
        publish_image(publisher, image_payload(image_id=good))

        wait_for(lambda: admin_copy(es, names["group"], good), 30, "the good one")
        wait_for(lambda: len(dead_letters(es, names["dead_letters"])) >= len(raw), 30,
                 "the rejected messages' dead letters")
        records = list(dead_letters(es, names["dead_letters"]).values())
        assert len(records) == len(raw)
        assert {r["stage"] for r in records} == {"rejected"}
        assert all("(rejected)" in r["reason"] for r in records)
        bodies = [json.loads(r["notification"])["payload"] for r in records]
        assert "this is not json {" in bodies and envelope in bodies
        assert any(b.startswith("base64:") for b in bodies)
        assert listener.rejected.stats()["recorded"] == len(raw)
    finally:
        rabbitmqctl("clear_policy", "-p", vhost, policy)
