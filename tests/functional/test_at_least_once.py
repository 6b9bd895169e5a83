"""A batch is acknowledged only once Elasticsearch has it."""
import kombu

from tests.conftest import AMQP_URL
from tests.functional.conftest import wait_for
from tests.functional.test_dead_letters import image_payload

IDS = [f"1a2b3c4d-0000-4000-8000-{i:012d}" for i in range(20)]


def queued(pool: str) -> int:
    with kombu.Connection(AMQP_URL) as conn:
        return conn.channel().queue_declare(pool, passive=True).message_count


def test_a_refusing_elasticsearch_gets_retries_and_no_ack(
        start_listener, publisher, es, names):
    listener = start_listener()
    index = f"{names['group']}-listener"
    # Elasticsearch's flood-stage block: writes answer 429 until it is lifted.
    es.indices.put_settings(index=index,
                            settings={"index.blocks.read_only_allow_delete": True})
    try:
        for image_id in IDS:
            publisher.publish("glance", "notifications", "image.localhost",
                              "image.update", image_payload(image_id=image_id))
        wait_for(lambda: listener.indexer.retries >= 3, 30,
                 "the listener to retry the refused batch")
        assert listener.processor.counters["notifications"] == 0
        # Stopping now hands the unacknowledged batch back to RabbitMQ.
        listener.stop()
        assert queued(names["pool"]) == len(IDS)
    finally:
        es.indices.put_settings(index=index,
                                settings={"index.blocks.read_only_allow_delete": None})

    second = start_listener()
    wait_for(lambda: second.processor.counters["notifications"] >= len(IDS), 30,
             "the requeued batch to be indexed once Elasticsearch accepts writes")
    docs = es.mget(index=index, ids=[f"{i}_ADMIN" for i in IDS])["docs"]
    assert all(d["found"] for d in docs)
    assert queued(names["pool"]) == 0
